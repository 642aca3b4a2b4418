"""Benchmark: one large Redivis table through read sessions, with 1 and with 4 read streams.

Runs the sandbox in this process and the tap as a child process writing Singer messages to
a pipe read here; checks the rows (count and an order-independent checksum over every
value) against the sandbox's own, and prints wall time, rows per second and the tap's peak
RSS for each run, then the 4-stream/1-stream speed ratio.

    .venv/bin/python bench/redivis_rows.py [--rows 1000000] [--link-mbps 0 20]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dataplatforms_sandbox import CREDENTIALS, Sandbox  # noqa: E402


def canonical(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="microseconds") + "+00:00"
    if isinstance(value, dt.time):
        return value.isoformat(timespec="microseconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def row_digest(row: dict[str, Any]) -> int:
    text = json.dumps([row[k] for k in sorted(row)], separators=(",", ":"))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def expected_checksum(sandbox: Sandbox, table: Any) -> tuple[int, int]:
    sessions = sandbox.platform("redivis").read_sessions
    total, count, step = 0, 0, 100_000
    for start in range(0, table.num_rows, step):
        for row in sessions.rows(table, start, min(start + step, table.num_rows)):
            total = (total + row_digest({k: canonical(v) for k, v in row.items()})) % 2**64
            count += 1
    return count, total


def watch_peak_rss(pid: int, peak: list[int]) -> None:
    """Follow the child's VmHWM (its own high-water mark of resident memory)."""
    while True:
        try:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peak[0] = max(peak[0], int(line.split()[1]))
        except (FileNotFoundError, ProcessLookupError, ValueError):
            return
        time.sleep(0.2)


def run_tap(config: dict[str, Any], stream: str) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(config, handle)
    started = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    process = subprocess.Popen(
        [str(ROOT / ".venv/bin/tap-dataplatforms"), "--config", handle.name],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    peak = [0]
    watcher = threading.Thread(target=watch_peak_rss, args=(process.pid, peak), daemon=True)
    watcher.start()
    total, count = 0, 0
    assert process.stdout is not None
    for line in process.stdout:
        if not line.startswith('{"type":"RECORD"') and '"RECORD"' not in line[:20]:
            continue
        message = json.loads(line)
        if message.get("stream") != stream:
            continue
        record = message["record"]
        record.pop("_row_number", None)
        total = (total + row_digest(record)) % 2**64
        count += 1
    code = process.wait()
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    os.unlink(handle.name)
    return {
        "exit": code,
        "rows": count,
        "checksum": total,
        "seconds": elapsed,
        "cpu_seconds": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        "peak_rss_mb": peak[0] / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--link-mbps",
        type=float,
        nargs="+",
        default=[0.0, 20.0],
        help="per-connection link caps to measure at (0: loopback, no cap)",
    )
    args = parser.parse_args()

    sandbox = Sandbox(seed=1, scale=1, limits={"redivis": (1_000_000, 60.0)}).start()
    table = next(
        t
        for ds in sandbox.redivis.datasets_by_owner["demo"]
        if ds.may("data")
        for t in ds.current_tables
        if len({v.type for v in t.variables}) == 8
    )
    table.num_rows = args.rows
    print(f"table {table.qualified_reference}: {args.rows} rows, {len(table.variables)} columns")
    want_count, want_sum = expected_checksum(sandbox, table)
    from tap_dataplatforms.core.naming import slug

    stream = f"redivis_rows__{slug(table.name)}"
    for link in args.link_mbps:
        sandbox.link_bytes_per_second = link * 1_000_000 / 8
        label = f"{link:g} Mbit/s a connection" if link else "loopback, no link cap"
        print(f"-- {label}")
        measure(sandbox, table, stream, (want_count, want_sum))
    sandbox.stop()


def measure(sandbox: Sandbox, table: Any, stream: str, want: tuple[int, int]) -> None:
    """Read the table with 1 and with 4 read streams; print both and the speed-up."""
    results = {}
    for streams in (1, 4):
        config = {
            "redivis": {
                "api_url": sandbox.base_url("redivis"),
                "token": CREDENTIALS["redivis"]["token"],
                "tables": [table.qualified_reference],
                "read_streams": streams,
            }
        }
        result = run_tap(config, stream)
        ok = (result["rows"], result["checksum"]) == want
        results[streams] = result
        print(
            f"read_streams={streams}: {result['rows']} rows in {result['seconds']:.1f}s "
            f"({result['rows'] / result['seconds']:.0f} rows/s), "
            f"cpu {result['cpu_seconds']:.1f}s, peak RSS {result['peak_rss_mb']:.0f} MB, "
            f"exit {result['exit']}, rows and checksum {'match' if ok else 'DIFFER'}"
        )
    ratio = results[1]["seconds"] / results[4]["seconds"]
    print(f"speed-up with 4 read streams over 1: {ratio:.2f}x")


if __name__ == "__main__":
    main()
