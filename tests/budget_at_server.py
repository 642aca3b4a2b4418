"""Request budgets measured where they count: at the server, over every rolling second.

Used by ``tests/test_budget_at_server.py`` (the budget holds, no 429) and by
``bench/budgets.py`` (the configured budget and the server's peak, side by side). The
sandbox runs in the caller's process; each tap is a child process started as Meltano
starts it: the sync alone, or ``--discover`` and then the sync with that catalog, back
to back (as ``meltano run`` does). Everything is read from the sandbox's request log.
Optionally every CPU of the machine is kept busy meanwhile (``cpu_burner``), so that
requests reach the server as bunched as they do on a loaded machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataplatforms_sandbox import CREDENTIALS, Sandbox

ROOT = Path(__file__).resolve().parent.parent
TAP = ROOT / ".venv" / "bin" / "tap-dataplatforms"
MODES = ("alone", "discover+sync")
#: The server's limit in these measurements, requests per rolling second: Dexi's (doc).
SERVER_LIMIT = 75


@dataclass
class Measured:
    platform: str
    budget: float
    mode: str
    backend: str
    requests: int
    peak: int  # most requests that arrived within any rolling second
    rejected: int  # 429 answers
    exit_codes: list[int]


def platform_config(sb: Sandbox, platform: str, budget: float, backend: str) -> dict[str, Any]:
    """A config reading one platform at ``budget`` requests a second (Dexi without
    dataset rows and files, as in the issue's measurements)."""
    blocks: dict[str, dict[str, Any]] = {
        "dexi": {"api_url": sb.base_url("dexi") + "/", **CREDENTIALS["dexi"]},
        "reinfer": {"api_url": sb.base_url("reinfer"), **CREDENTIALS["reinfer"]},
        "redivis": {
            "api_url": sb.base_url("redivis"),
            **CREDENTIALS["redivis"],
            "organizations": ["demo", "census_archive"],
            "users": ["jdoe"],
        },
    }
    block = {**blocks[platform], "max_requests_per_second": budget}
    return {"rate_limit_backend": backend, "start_date": "2000-01-01T00:00:00Z", platform: block}


@contextlib.contextmanager
def cpu_burner(processes: int | None = None) -> Iterator[None]:
    """Keep every CPU busy (one spinning process per CPU, at normal priority)."""
    count = processes or os.cpu_count() or 2
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        time.sleep(0.2)
        yield
    finally:
        for burner in burners:
            burner.kill()
        for burner in burners:
            burner.wait()


def _first_after(sb: Sandbox, platform: str, instant: float) -> float | None:
    times = [float(e["time"]) for e in sb.request_log(platform) if float(e["time"]) >= instant]
    return min(times) if times else None


def _run(
    sb: Sandbox,
    platform: str,
    args: list[str],
    *,
    env: dict[str, str],
    stdout: Any,
    stderr: Any,
    traffic_seconds: float | None,
    timeout: float,
) -> int:
    """Run one tap process; with ``traffic_seconds``, stop it that long after its first
    request reached the server (enough to measure, without reading everything)."""
    started = time.time()
    proc = subprocess.Popen([str(TAP), *args], stdout=stdout, stderr=stderr, env=env)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
            if traffic_seconds is None:
                continue
            first = _first_after(sb, platform, started)
            if first is not None and time.time() - first >= traffic_seconds:
                break
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    # Stopped on purpose: not a failure of the tap.
    return 0 if proc.returncode in (0, -15) else int(proc.returncode)


def measure(
    sb: Sandbox,
    platform: str,
    budget: float,
    mode: str,
    workdir: Path,
    *,
    backend: str = "memory",
    traffic_seconds: float | None = 2.0,
    timeout: float = 120.0,
) -> Measured:
    """One tap run (``mode``: ``alone`` or ``discover+sync``) against ``sb``; the server's
    view of it. The sandbox log is cleared first; the limit is ``SERVER_LIMIT`` a
    rolling second (the platform's own limit, for Redivis)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "config.json"
    config.write_text(json.dumps(platform_config(sb, platform, budget, backend)))
    # The budgets' carry-over files of this run only (never the user's own).
    env = {**os.environ, "TAP_DATAPLATFORMS_STATE_DIR": str(workdir / "state")}
    if platform != "redivis":
        sb.set_limit(platform, SERVER_LIMIT, 1.0)
    time.sleep(1.1)  # the previous run's requests leave the server's window
    sb.clear_log()
    codes: list[int] = []
    with (workdir / "tap.log").open("ab") as log:
        if mode == "discover+sync":
            catalog = workdir / "catalog.json"
            with catalog.open("wb") as out:
                codes.append(
                    _run(
                        sb,
                        platform,
                        ["--config", str(config), "--discover"],
                        env=env,
                        stdout=out,
                        stderr=log,
                        traffic_seconds=None,
                        timeout=timeout,
                    )
                )
            args = ["--config", str(config), "--catalog", str(catalog)]
        else:
            args = ["--config", str(config)]
        codes.append(
            _run(
                sb,
                platform,
                args,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
                traffic_seconds=traffic_seconds,
                timeout=timeout,
            )
        )
    seen = sb.peak(platform)
    return Measured(
        platform=platform,
        budget=budget,
        mode=mode,
        backend=backend,
        requests=seen["requests"],
        peak=seen["peak"],
        rejected=seen["rejected"],
        exit_codes=codes,
    )


def table(results: list[Measured]) -> list[str]:
    """The issue's table: per platform and budget, server peak / 429s in both modes."""
    lines = [
        "| platform | budget (req/s) | sync alone: server peak / 1 s, 429s "
        "| --discover then sync: server peak / 1 s, 429s |",
        "|---|---|---|---|",
    ]
    keys = dict.fromkeys((r.platform, r.budget, r.backend) for r in results)
    for platform, budget, backend in keys:
        cells = []
        for mode in MODES:
            found = [
                r
                for r in results
                if (r.platform, r.budget, r.backend, r.mode) == (platform, budget, backend, mode)
            ]
            cells.append(
                f"{found[0].peak} / {found[0].rejected} x 429 ({found[0].requests} req)"
                if found
                else "-"
            )
        label = platform if backend == "memory" else f"{platform} ({backend.split(':')[0]})"
        lines.append(f"| {label} | {budget:g} | {cells[0]} | {cells[1]} |")
    return lines
