"""Several tap processes spending one Dexi credential's budget against one sandbox.

Used by ``tests/test_scale_out.py`` (limits never exceeded, no 429) and by
``bench/scale_out.py`` (how close the processes come to the limit). The sandbox runs in
the caller's process, the taps are child processes, and everything is read from the
sandbox's request log: arrival times and statuses as the platform saw them.
"""

from __future__ import annotations

import bisect
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataplatforms_sandbox import CREDENTIALS, Sandbox

ROOT = Path(__file__).resolve().parent.parent
TAP = ROOT / ".venv" / "bin" / "tap-dataplatforms"


@dataclass
class Outcome:
    requests: int
    rejected: int  # 429 answers
    busiest_second: int  # most requests that arrived within any one second
    wall_seconds: float  # first process started to last process ended
    active_seconds: float  # first request to last request, as the sandbox saw them
    exit_codes: list[int]


def busiest_window(times: list[float], window: float = 1.0) -> int:
    """The most arrivals in any ``window`` seconds (every window, not only aligned ones)."""
    ordered = sorted(times)
    return max(
        (bisect.bisect_left(ordered, t + window) - i for i, t in enumerate(ordered)), default=0
    )


def dexi_config(sb: Sandbox, *, limit: int, backend: str, index: int, count: int) -> dict[str, Any]:
    return {
        "rate_limit_backend": backend,
        "partition": {"index": index, "count": count},
        "max_retries": 3,
        "dexi": {
            "api_url": sb.base_url("dexi"),
            **CREDENTIALS["dexi"],
            # Each process is told the platform's whole limit: only the shared backend
            # keeps their sum inside it.
            "max_requests_per_second": limit,
        },
    }


def run_processes(
    sb: Sandbox,
    *,
    limit: int,
    backend: str,
    workdir: Path,
    processes: int = 4,
    stop_after_429: bool = False,
    timeout: float = 300.0,
) -> Outcome:
    """Run ``processes`` partitioned Dexi syncs at once; read the outcome from the log.

    With ``stop_after_429`` the processes are stopped once the sandbox has answered a
    429 (enough to show that the limit was exceeded, without waiting out the backoff).
    """
    sb.set_limit("dexi", limit, 1.0)
    sb.clear_log()
    workdir.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    started = time.monotonic()
    for index in range(processes):
        config = workdir / f"config-{index}.json"
        config.write_text(
            json.dumps(dexi_config(sb, limit=limit, backend=backend, index=index, count=processes))
        )
        with (workdir / f"tap-{index}.log").open("wb") as log:
            procs.append(
                subprocess.Popen(
                    [str(TAP), "--config", str(config)],
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    cwd=workdir,
                )
            )
    deadline = started + timeout
    try:
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            if stop_after_429 and any(e["status"] == 429 for e in sb.request_log(platform="dexi")):
                break
            time.sleep(0.05)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    ended = time.monotonic()
    log = sb.request_log(platform="dexi")
    times = [float(e["time"]) for e in log]
    return Outcome(
        requests=len(log),
        rejected=sum(1 for e in log if e.get("status") == 429),
        busiest_second=busiest_window(times),
        wall_seconds=ended - started,
        active_seconds=(max(times) - min(times)) if times else 0.0,
        exit_codes=[int(p.returncode) for p in procs],
    )
