"""Benchmark: each platform's configured budget beside the peak its server sees.

The sandbox runs in this process with a limit of 75 requests per rolling second for
Dexi and Re:infer (Redivis keeps its documented 1,000 a minute); for each platform and
budget the tap runs twice, as Meltano runs it: the sync alone, then ``--discover`` and
the sync back to back. Printed, from the sandbox's request log: the most requests that
arrived within any rolling second, and the 429 answers. A budget holds when the peak is
at most ceil(budget) (+1 for arrival jitter) and no request was refused.

    .venv/bin/python bench/budgets.py               # dexi, reinfer, redivis x 37, 37.5, 12.25
    .venv/bin/python bench/budgets.py --quick       # dexi and reinfer at 37.5 and 12.25
    .venv/bin/python bench/budgets.py --busy        # with every CPU kept busy meanwhile
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dataplatforms_sandbox import Sandbox  # noqa: E402
from tests.budget_at_server import MODES, Measured, cpu_burner, measure  # noqa: E402

PLATFORMS = ("dexi", "reinfer", "redivis")
BUDGETS = (37.0, 37.5, 12.25)


HEADER = (
    f"{'platform':<8} {'budget':>7} {'ceil':>5} | {'sync alone: peak':>16} {'429s':>5} | "
    f"{'discover+sync: peak':>19} {'429s':>5} |"
)


def row(results: list[Measured]) -> str:
    first = results[0]
    alone, both = results
    held = all(r.peak <= math.ceil(r.budget) + 1 and r.rejected == 0 for r in results)
    return (
        f"{first.platform:<8} {first.budget:>7g} {math.ceil(first.budget):>5} | "
        f"{alone.peak:>16} {alone.rejected:>5} | {both.peak:>19} {both.rejected:>5} | "
        f"{'holds' if held else 'EXCEEDED'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="dexi, reinfer at 37.5 and 12.25")
    parser.add_argument("--platforms", help=f"comma-separated (default: {','.join(PLATFORMS)})")
    parser.add_argument("--budgets", help="comma-separated requests a second")
    parser.add_argument("--busy", action="store_true", help="keep every CPU busy meanwhile")
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="traffic per run before it is stopped"
    )
    args = parser.parse_args()
    platforms = args.platforms.split(",") if args.platforms else list(PLATFORMS)
    budgets = [float(b) for b in args.budgets.split(",")] if args.budgets else list(BUDGETS)
    if args.quick:
        platforms = args.platforms.split(",") if args.platforms else ["dexi", "reinfer"]
        budgets = [float(b) for b in args.budgets.split(",")] if args.budgets else [37.5, 12.25]

    print("Server-side peak per rolling second against the configured budget")
    print(HEADER)
    sandbox = Sandbox(seed=1, scale=1, glitches=False).start()
    busy = cpu_burner() if args.busy else contextlib.nullcontext()
    exceeded = False
    try:
        with tempfile.TemporaryDirectory() as tmp, busy:
            for platform in platforms:
                for budget in budgets:
                    results = [
                        measure(
                            sandbox,
                            platform,
                            budget,
                            mode,
                            Path(tmp) / f"{platform}-{budget}-{n}",
                            traffic_seconds=args.seconds,
                        )
                        for n, mode in enumerate(MODES)
                    ]
                    line = row(results)
                    exceeded = exceeded or line.endswith("EXCEEDED")
                    print(line, flush=True)
    finally:
        sandbox.stop()
    return 1 if exceeded else 0


if __name__ == "__main__":
    sys.exit(main())
