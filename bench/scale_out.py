"""Benchmark: four tap processes sharing one Dexi account's budget, per backend.

The sandbox runs in this process with a Dexi limit of L requests a second; four
partitioned tap processes (``partition`` 0..3 of 4) each told the whole limit
(``dexi.max_requests_per_second = L``) share their budget through the backend. Printed,
from the sandbox's request log: requests, 429s, the busiest second, and how long the
work took against the floor the limit sets, ``requests / L``:

- ``active``: first request to last request, as the sandbox saw them;
- ``wall``: first process started to last process ended (Python start-up included).

    .venv/bin/python bench/scale_out.py [--limit 20] [--scale 2] [--backends redis sqlite memory]

Redis must answer on 127.0.0.1:6379 (database 2 is used and its tap keys cleared).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dataplatforms_sandbox import Sandbox  # noqa: E402
from tap_dataplatforms.core.budget import KEY_PREFIX  # noqa: E402
from tests.shared_budget import run_processes  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/2"


def clear_redis() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{KEY_PREFIX}:*"):
        client.delete(key)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=20, help="sandbox limit L per second")
    parser.add_argument("--scale", type=int, default=2, help="sandbox data scale")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--backends", nargs="+", default=["redis", "sqlite", "memory"])
    args = parser.parse_args()

    print(f"Dexi sandbox limit L = {args.limit}/s, {args.processes} processes, scale {args.scale}")
    header = f"{'backend':8} {'requests':>8} {'429s':>5} {'busiest 1s':>10} "
    header += f"{'requests/L':>10} {'active':>7} {'ratio':>6} {'wall':>7} {'ratio':>6}"
    print(header)
    failed = False
    with tempfile.TemporaryDirectory(prefix="tapdp-scale-out-") as tmp:
        for backend in args.backends:
            if backend == "redis":
                clear_redis()
                url = REDIS_URL
            elif backend == "sqlite":
                url = f"sqlite:///{Path(tmp) / 'budgets.sqlite'}"
            else:
                url = "memory"
            sb = Sandbox(seed=11, scale=args.scale).start()
            try:
                out = run_processes(
                    sb,
                    limit=args.limit,
                    backend=url,
                    workdir=Path(tmp) / backend,
                    processes=args.processes,
                    # Memory budgets do exceed the limit: stop at the first 429.
                    stop_after_429=backend == "memory",
                )
            finally:
                sb.stop()
            floor = out.requests / args.limit
            print(
                f"{backend:8} {out.requests:8d} {out.rejected:5d} {out.busiest_second:10d} "
                f"{floor:9.1f}s {out.active_seconds:6.1f}s {out.active_seconds / floor:6.2f} "
                f"{out.wall_seconds:6.1f}s {out.wall_seconds / floor:6.2f}"
            )
            if backend != "memory" and (out.rejected or out.busiest_second > args.limit):
                failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
