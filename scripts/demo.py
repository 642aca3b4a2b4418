#!/usr/bin/env python3
"""The demo: sandbox -> tap-dataplatforms -> Meltano -> DuckDB, then rows per table.

Run it with ``make demo`` (or ``python3 scripts/demo.py``) on a machine that has nothing
but Python 3 and make. It

1. creates or refreshes the development environment ``.venv`` (the tap and its sandbox) and
   Meltano's own environment ``.venv-meltano`` (Meltano pins its own dependencies, so it
   lives apart from the tap's);
2. starts the sandbox (``tap-dataplatforms-sandbox``), a local emulator of the platforms;
3. runs ``meltano install`` and ``meltano run tap-dataplatforms
   target-dataplatforms-duckdb``, the tap configured through ``TAP_DATAPLATFORMS_*``
   environment variables pointing at the sandbox. The target is this repository's own
   (``warehouse/``): it honours the tap's table versions (``ACTIVATE_VERSION``), here
   with soft delete, so rows the source no longer has get ``_sdc_deleted_at``;
4. changes the sandbox's data as a day would (``POST /_sandbox/change``: rows deleted,
   tables rewritten, a new Redivis version, a robot's new column) and runs again from the
   first run's state, printing the changes and, per table the second run changed, its
   live rows before and after, the rows it added and deleted and the columns it added;
5. prints the live rows per table found in the DuckDB file, and the elapsed time.

The sandbox is stopped in every case. The exit code is non-zero when a step fails or when
a table, or a stream the demo expects, holds no rows.

Only the standard library is used until the environments exist; the rest then runs under
``.venv/bin/python`` (the script re-executes itself there).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
VENV_PYTHON = VENV / "bin" / "python"
VENV_STAMP = VENV / ".installed"  # the Makefile touches the same stamp
MELTANO_VENV = ROOT / ".venv-meltano"
MELTANO = MELTANO_VENV / "bin" / "meltano"
UV = MELTANO_VENV / "bin" / "uv"
MELTANO_VERSION = "4.4.1"
UV_VERSION = "0.13.9"
INSTALL_STAMP = ROOT / ".meltano" / ".demo-installed"
#: The demo's warehouse target: warehouse/ in this repository (meltano.yml).
LOADER = "target-dataplatforms-duckdb"
TARGET_PYTHON = ROOT / ".meltano" / "loaders" / LOADER / "venv" / "bin" / "python"
TARGET_SCHEMA = "tap_dataplatforms"
EXTRACTOR = "tap-dataplatforms"
#: The distributions .venv holds beside the tap, and their project files.
LOCAL_DISTRIBUTIONS = ("./sandbox", "./warehouse")
PROJECT_FILES = ("pyproject.toml", "sandbox/pyproject.toml", "warehouse/pyproject.toml")
ENV_PREFIX = "TAP_DATAPLATFORMS_"
SANDBOX_START_TIMEOUT = 30.0


@dataclass(frozen=True)
class DemoPlatform:
    """How the demo points one platform of the tap at the sandbox.

    The tap is configured with ``<platform>.api_url`` = sandbox URL + ``base_path``, the
    sandbox's credentials for the platform (``credentials`` picks which, all by default)
    and ``settings`` (``{output}`` in a string stands for the output directory). Streams
    in ``deselect`` are left out; the demo expects rows in each of ``streams``. Streams in
    ``skipped`` are ones the default sandbox does not serve (a route its Datalinx instance
    lacks): the demo expects no table for them and the tap's warning naming each.
    ``sandbox_limit`` (requests, window seconds) sets the account's plan at the sandbox,
    which the tap's ``max_requests_per_second`` in ``settings`` then matches.
    """

    base_path: str
    streams: tuple[str, ...]
    settings: Mapping[str, Any] = field(default_factory=dict)
    credentials: tuple[str, ...] | None = None
    deselect: tuple[str, ...] = ()
    sandbox_limit: tuple[int, float] | None = None
    skipped: tuple[str, ...] = ()


# One entry per platform the tap implements; a new platform is one more entry.
PLATFORMS: dict[str, DemoPlatform] = {
    "redivis": DemoPlatform(
        base_path="/redivis/api/v1",
        settings={"organizations": ["demo", "census_archive"], "users": ["jdoe"]},
        streams=("redivis_datasets", "redivis_tables", "redivis_variables"),
    ),
    "dexi": DemoPlatform(
        base_path="/dexi/",
        settings={"download_files": True, "files_dir": "{output}/dexi-files"},
        streams=("dexi_runs", "dexi_executions", "dexi_files"),
    ),
    "reinfer": DemoPlatform(
        base_path="/reinfer",
        streams=(
            "reinfer_projects",
            "reinfer_datasets",
            "reinfer_sources",
            "reinfer_comments",
            "reinfer_streams",
            "reinfer_labellings",
            "reinfer_predictions",
        ),
    ),
    "invision": DemoPlatform(
        base_path="/invision",
        # Runs are only extracted when the tap triggers data flows (a side effect).
        deselect=("invision_dataflow_runs",),
        streams=("invision_execution_log",),
    ),
    "datalinx": DemoPlatform(
        base_path="/datalinx/api",
        # The demo's organization is on Datalinx's Pro plan (300 requests a minute, burst
        # 50), and the tap's budget says so: 5 a second. The tap's default, 1 a second,
        # is the Free plan's 60 a minute, which would make a third of the demo waiting.
        sandbox_limit=(300, 60.0),
        settings={"max_requests_per_second": 5},
        credentials=("api_key",),
        streams=tuple(
            f"datalinx_{name}"
            for name in (
                "workspaces",
                "sources",
                "schemas",
                "mappings",
                "pipelines",
                "pipeline_runs",
                "audiences",
                "queries",
                "users",
                "roles",
                "service_accounts",
            )
        ),
        # The default sandbox's instance has no /alerts route (an assumed route, in no
        # public source; dataplatforms_sandbox.datalinx.DEFAULT_MISSING_ROUTES).
        skipped=("datalinx_alerts",),
    ),
}


#: The Meltano environment and the state directory (under the output dir) of the demo.
DEMO_ENVIRONMENT = "demo"
DEMO_STATE_DIR = "meltano-state"

#: Where the tap writes its run summary (setting run_summary_path), under the output dir.
SUMMARY_FILE = "demo-run-summary.json"

#: ``dexi_runs`` carries the robot's ``version`` field, and the tap gives a stream with a
#: top-level ``version`` column no table version (target-postgres 0.8.1 fails its soft
#: delete there); renamed on its way out, the stream is mirrored like the others, so the
#: run the sandbox deletes leaves the table (README, "What the warehouse holds").
DEMO_STREAM_MAPS = {"dexi_runs": {"robot_version": "version", "version": "__NULL__"}}


def seeded_objects(seed: int, scale: int) -> dict[str, str]:
    """``TAP_DATAPLATFORMS_*`` variables naming the objects whose rows the demo reads
    besides what every stream lists: the sandbox's Dexi datasets and InVision tables
    (the rows the sandbox's change deletes and rewrites). The sandbox is seeded, so the
    same data built here (not served) has the ids the sandbox process serves."""
    from dataplatforms_sandbox import Sandbox

    seeded = Sandbox(seed=seed, scale=scale)
    return {
        f"{ENV_PREFIX}DEXI_DATASET_IDS": json.dumps(list(seeded.dexi.datasets)),
        f"{ENV_PREFIX}INVISION_TABLES": json.dumps(list(seeded.invision.tables)),
        f"{ENV_PREFIX}STREAM_MAPS": json.dumps(DEMO_STREAM_MAPS),
    }


class DemoError(Exception):
    """A step of the demo failed; the message says which and why."""


# --------------------------------------------------------------------------- environments


def _run(cmd: Sequence[str | Path], **kwargs: Any) -> None:
    printable = " ".join(str(part) for part in cmd)
    print(f"  $ {printable}", flush=True)
    result = subprocess.run([str(part) for part in cmd], cwd=ROOT, check=False, **kwargs)
    if result.returncode != 0:
        raise DemoError(f"command failed with exit code {result.returncode}: {printable}")


def _meltano_installed() -> bool:
    site = MELTANO_VENV / "lib"
    dist_info = f"meltano-{MELTANO_VERSION}.dist-info"
    return (
        MELTANO.exists()
        and UV.exists()
        and any(site.glob(f"python3*/site-packages/{dist_info}"))
        and any(site.glob("python3*/site-packages/psycopg"))
    )


def ensure_meltano() -> None:
    """Install Meltano (and uv, which it uses to build plugin environments) in .venv-meltano."""
    if _meltano_installed():
        return
    print(f"Installing Meltano {MELTANO_VERSION} into {MELTANO_VENV.name}/ ...", flush=True)
    if not (MELTANO_VENV / "bin" / "python").exists():
        _run([sys.executable, "-m", "venv", MELTANO_VENV])
    # uv first: it installs Meltano (and later every plugin) in a fraction of pip's time.
    _run([MELTANO_VENV / "bin" / "python", "-m", "pip", "install", "-qq", f"uv=={UV_VERSION}"])
    _run(
        [
            UV,
            "pip",
            "install",
            "-q",
            "--python",
            MELTANO_VENV / "bin" / "python",
            # The postgres extra (psycopg): Meltano's system database in PostgreSQL.
            f"meltano[postgres]=={MELTANO_VERSION}",
        ]
    )


def _dev_venv_fresh() -> bool:
    return (
        VENV_PYTHON.exists()
        and (VENV / "bin" / "tap-dataplatforms-sandbox").exists()
        and (VENV / "bin" / LOADER).exists()
        and VENV_STAMP.exists()
        and all(VENV_STAMP.stat().st_mtime >= (ROOT / p).stat().st_mtime for p in PROJECT_FILES)
    )


def ensure_dev_venv() -> None:
    """Create or refresh .venv with the tap, its sandbox, the warehouse target (for the
    tests) and the dev tools."""
    if _dev_venv_fresh():
        return
    print(f"Installing tap-dataplatforms[dev] into {VENV.name}/ ...", flush=True)
    if not VENV_PYTHON.exists():
        _run([sys.executable, "-m", "venv", VENV])
    local = [arg for path in LOCAL_DISTRIBUTIONS for arg in ("-e", path)]
    _run([UV, "pip", "install", "-q", "--python", VENV_PYTHON, "-e", ".[dev]", *local])
    VENV_STAMP.touch()


def _in_dev_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


# --------------------------------------------------------------------------- processes


def _signal_group(pgid: int, signum: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _stop(proc: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """Stop a process started in a session of its own, and all it left in its group.

    Own sessions keep a terminal's Ctrl-C from reaching the children before the demo
    handles it, and let the demo clean up what Meltano leaves behind (a discovery process
    still running after ``meltano run`` timed out, say).
    """
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
    _signal_group(proc.pid, signal.SIGTERM)


def _copy_lines(src: IO[str], dst: IO[str]) -> None:
    for line in src:
        dst.write(line)
        dst.flush()


@contextmanager
def sandbox(seed: int, scale: int, log_path: Path) -> Iterator[str]:
    """Start the sandbox on a free port; yield its base URL; always stop it."""
    cmd = [
        str(VENV / "bin" / "tap-dataplatforms-sandbox"),
        "--port",
        "0",
        "--seed",
        str(seed),
        "--scale",
        str(scale),
    ]
    for name, platform in PLATFORMS.items():
        if platform.sandbox_limit is not None:
            requests, window = platform.sandbox_limit
            cmd += ["--limit", f"{name}={requests}/{window:g}"]
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True
        )
        try:
            assert proc.stdout is not None
            url = _read_sandbox_url(proc, proc.stdout, log_path)
            drain = threading.Thread(target=_copy_lines, args=(proc.stdout, log), daemon=True)
            drain.start()
            yield url
        finally:
            _stop(proc)
            print("Sandbox stopped.", flush=True)


def _read_sandbox_url(proc: subprocess.Popen[str], stdout: IO[str], log_path: Path) -> str:
    found: list[str] = []
    reader = threading.Thread(target=lambda: found.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(SANDBOX_START_TIMEOUT)
    line = found[0] if found else ""
    match = re.search(r"listening on (http://\S+)", line)
    if not match:
        proc.poll()
        raise DemoError(
            f"the sandbox did not start (exit code {proc.returncode}, first line {line!r}); "
            f"see {_rel(log_path)}"
        )
    return match.group(1).rstrip("/")


def run_logged(
    cmd: Sequence[str | Path], env: Mapping[str, str], log_path: Path, *, verbose: bool
) -> None:
    """Run a command, its output to a log file (and the terminal with --verbose)."""
    printable = " ".join(str(part) for part in cmd)
    print(f"  $ {printable}   (log: {_rel(log_path)})", flush=True)
    with log_path.open("a") as log:
        log.write(f"$ {printable}\n")
        log.flush()
        proc = subprocess.Popen(
            [str(part) for part in cmd],
            cwd=ROOT,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                if verbose:
                    sys.stdout.write(line)
            proc.wait()
        finally:
            _stop(proc)
    if proc.returncode != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-30:]
        print("\n".join(f"    | {line}" for line in tail), file=sys.stderr)
        raise DemoError(f"{printable} failed with exit code {proc.returncode}")


# --------------------------------------------------------------------------- Meltano


def tap_environment(
    url: str, credentials: Mapping[str, Mapping[str, str]], output: Path
) -> dict[str, str]:
    """TAP_DATAPLATFORMS_* variables that point every demo platform at the sandbox."""
    env: dict[str, str] = {}
    for name, platform in PLATFORMS.items():
        values: dict[str, Any] = {"api_url": url + platform.base_path}
        creds = credentials[name]
        for key in platform.credentials or tuple(creds):
            values[key] = creds[key]
        values.update(platform.settings)
        for key, value in values.items():
            if isinstance(value, str):
                text = value.replace("{output}", str(output))
            else:
                text = json.dumps(value)
            env[f"{ENV_PREFIX}{name.upper()}_{key.upper()}"] = text
    env[f"{ENV_PREFIX}RUN_SUMMARY_PATH"] = str(output / SUMMARY_FILE)
    deselected = [f"!{stream}.*" for p in PLATFORMS.values() for stream in p.deselect]
    env[f"{ENV_PREFIX}_SELECT"] = json.dumps(["*.*", *deselected])
    return env


def meltano_environment(tap_env: Mapping[str, str], duckdb_path: Path) -> dict[str, str]:
    # Only the demo's own tap settings: none inherited from the caller's shell.
    env = {key: value for key, value in os.environ.items() if not key.startswith(ENV_PREFIX)}
    env.update(tap_env)
    env.update(
        {
            "MELTANO_CLI_DISABLE_VERSION_CHECK": "1",
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            # Its own environment and state backend: the demo's bookmarks (state id
            # demo:tap-dataplatforms-to-target-dataplatforms-duckdb, in output/) never
            # become those of the user's own runs, which start from their own state.
            "MELTANO_ENVIRONMENT": DEMO_ENVIRONMENT,
            "MELTANO_STATE_BACKEND_URI": (duckdb_path.parent / DEMO_STATE_DIR).as_uri(),
            "TARGET_DATAPLATFORMS_DUCKDB_FILEPATH": str(duckdb_path),
            "TARGET_DATAPLATFORMS_DUCKDB_DEFAULT_TARGET_SCHEMA": TARGET_SCHEMA,
            # Rows of older table versions get _sdc_deleted_at (the target's default,
            # as target-postgres's): the summary counts them as the rows deleted.
            "TARGET_DATAPLATFORMS_DUCKDB_HARD_DELETE": "false",
        }
    )
    return env


def _install_fingerprint() -> str:
    digest = hashlib.sha256(MELTANO_VERSION.encode())
    for name in ("meltano.yml", *PROJECT_FILES):
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def meltano_install(env: Mapping[str, str], log_path: Path, *, verbose: bool) -> bool:
    """Install the demo's two plugins unless meltano.yml and pyproject.toml are unchanged."""
    fingerprint = _install_fingerprint()
    plugin_venvs = (ROOT / ".meltano" / "extractors" / EXTRACTOR / "venv", TARGET_PYTHON)
    if (
        all(path.exists() for path in plugin_venvs)
        and INSTALL_STAMP.exists()
        and INSTALL_STAMP.read_text().strip() == fingerprint
    ):
        print("Meltano plugins are up to date (meltano install skipped).", flush=True)
        return False
    run_logged([MELTANO, "install", EXTRACTOR, LOADER], env, log_path, verbose=verbose)
    INSTALL_STAMP.write_text(fingerprint + "\n")
    return True


# --------------------------------------------------------------------------- DuckDB

_COUNT_ROWS = """
import json, sys
import duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
columns = {}
for table, column in con.execute(
    "select table_name, column_name from information_schema.columns where table_schema = ?",
    [sys.argv[2]]).fetchall():
    columns.setdefault(table, set()).add(column)
live, deleted = {}, {}
for name in sorted(columns):
    soft = "_sdc_deleted_at" in columns[name]
    deleted_rows = "count(*) filter (where _sdc_deleted_at is not null)" if soft else "0"
    live[name], deleted[name] = con.execute(
        f"select count(*) - {deleted_rows}, {deleted_rows} "
        f'from "{sys.argv[2]}"."{name}"').fetchone()
print(json.dumps({"live": live, "deleted": deleted}))
"""


@dataclass(frozen=True)
class TableCounts:
    """Per table, its live rows (``_sdc_deleted_at`` null) and the rows older table
    versions left soft-deleted."""

    live: dict[str, int]
    deleted: dict[str, int]


def table_counts(duckdb_path: Path) -> TableCounts:
    """Rows per table, read with the duckdb module that wrote the file (the target's own)."""
    if not duckdb_path.exists():
        raise DemoError(f"no DuckDB file at {_rel(duckdb_path)}: the target wrote nothing")
    result = subprocess.run(
        [str(TARGET_PYTHON), "-c", _COUNT_ROWS, str(duckdb_path), TARGET_SCHEMA],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise DemoError(f"could not read {_rel(duckdb_path)}: {result.stderr.strip()}")
    counts = json.loads(result.stdout)
    return TableCounts(counts["live"], counts["deleted"])


def print_run_summary(output: Path) -> None:
    """The tap's own run summary (``run_summary_path``), as it logs it."""
    from tap_dataplatforms.core.summary import table_lines

    path = output / SUMMARY_FILE
    if not path.exists():
        return
    rows = json.loads(path.read_text())["streams"]
    print(f"\nRun summary of the tap ({_rel(path)}):")
    for line in table_lines(rows):
        print(f"  {line}")


_COLUMNS = """
import json, sys
import duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
rows = con.execute(
    "select table_name, column_name from information_schema.columns where table_schema = ?",
    [sys.argv[2]]).fetchall()
out = {}
for table, column in rows:
    out.setdefault(table, []).append(column)
print(json.dumps(out))
"""


def table_columns(duckdb_path: Path) -> dict[str, list[str]]:
    """Columns per table, read as ``table_counts`` reads rows."""
    result = subprocess.run(
        [str(TARGET_PYTHON), "-c", _COLUMNS, str(duckdb_path), TARGET_SCHEMA],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise DemoError(f"could not read {_rel(duckdb_path)}: {result.stderr.strip()}")
    columns: dict[str, list[str]] = json.loads(result.stdout)
    return columns


def change_sandbox(url: str) -> list[str]:
    """``POST /_sandbox/change``: the platforms' data changes as between two days."""
    import urllib.request

    # The sandbox's own http:// URL, read from its output.
    request = urllib.request.Request(url + "/_sandbox/change", data=b"{}", method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
        changes: list[str] = json.loads(answer.read())["changes"]
    return changes


def summarize_change(
    changes: Sequence[str],
    before: tuple[TableCounts, Mapping[str, list[str]]],
    after: tuple[TableCounts, Mapping[str, list[str]]],
) -> None:
    """What the second run did: the source's changes and, per table it changed, the live
    rows before and after, the rows it added and deleted (rows of older table versions,
    soft-deleted by ACTIVATE_VERSION) and the columns it added."""
    print("\nBetween the runs the sandbox changed:")
    for line in changes:
        print(f"  {line}")
    print("\nThe second run (live rows: _sdc_deleted_at is null):")
    total_deleted = total_added = 0
    widened: list[str] = []
    for name in sorted(after[0].live):
        rows_before, rows_after = before[0].live.get(name, 0), after[0].live[name]
        deleted = after[0].deleted.get(name, 0) - before[0].deleted.get(name, 0)
        added_rows = rows_after - rows_before + deleted
        added = [c for c in after[1].get(name, []) if c not in before[1].get(name, [])]
        if not (deleted or added_rows or added):
            continue
        line = f"  {name}: {rows_before} -> {rows_after} rows"
        parts = [f"{n} {what}" for n, what in ((added_rows, "added"), (deleted, "deleted")) if n]
        if parts:
            line += f" ({', '.join(parts)})"
        if added and name in before[0].live:
            line += f"; columns added: {', '.join(added)}"
            widened.append(name)
        print(line)
        total_deleted += deleted
        total_added += added_rows
    print(
        f"  in all: {total_added} rows added, {total_deleted} deleted, "
        f"columns added to {len(widened)} table{'' if len(widened) == 1 else 's'}"
    )


def summarize(counts: Mapping[str, int], elapsed: float, duckdb_path: Path) -> list[str]:
    """Print rows per table; return the problems (empty tables, missing streams)."""
    expected = [stream for platform in PLATFORMS.values() for stream in platform.streams]
    names = sorted(set(counts) | set(expected))
    width = max((len(name) for name in names), default=10)
    print(f"\nRows per table in {_rel(duckdb_path)} (schema {TARGET_SCHEMA}, live rows):")
    for name in names:
        rows = counts.get(name)
        print(f"  {name:<{width}}  {rows if rows is not None else 'missing':>8}")
    print(f"  {'total':<{width}}  {sum(counts.values()):>8}")
    print(f"\nDemo finished in {elapsed:.1f} s.")
    problems = [f"{name}: no table" for name in expected if name not in counts]
    problems += [f"{name}: 0 rows" for name in names if counts.get(name) == 0]
    return problems


def skipped_problems(counts: Mapping[str, int], log: str) -> list[str]:
    """Streams the sandbox does not serve must have no table, and the tap must have
    said why (one warning naming each, per run of the tap)."""
    problems = []
    for stream in (s for platform in PLATFORMS.values() for s in platform.skipped):
        if stream in counts:
            problems.append(f"{stream}: loaded, though the sandbox has no route for it")
        if not any("no route for" in line and stream in line for line in log.splitlines()):
            problems.append(f"{stream}: skipped without the tap's warning")
    return problems


# --------------------------------------------------------------------------- main


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seed", type=int, default=1, help="sandbox seed (default 1)")
    parser.add_argument("--scale", type=int, default=1, help="sandbox scale (default 1)")
    parser.add_argument(
        "--output",
        type=Path,
        default=ROOT / "output",
        help="where the DuckDB file and the logs go (default output/)",
    )
    parser.add_argument("--verbose", action="store_true", help="stream Meltano's log")
    parser.add_argument(
        "--setup-only",
        action="store_true",
        help="only create the environments (.venv, .venv-meltano), then exit",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = float(os.environ.get("DEMO_STARTED_AT", time.time()))
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        ensure_meltano()
        ensure_dev_venv()
        if args.setup_only:
            return 0
        if not _in_dev_venv():
            # Continue under .venv's Python, where the tap's sandbox package is importable.
            os.environ["DEMO_STARTED_AT"] = str(started)
            script = [str(VENV_PYTHON), str(Path(__file__).resolve())]
            os.execv(str(VENV_PYTHON), [*script, *(argv if argv is not None else sys.argv[1:])])  # noqa: S606
        return run_demo(args, started)
    except DemoError as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo interrupted", file=sys.stderr)
        return 130


def run_demo(args: argparse.Namespace, started: float) -> int:
    from dataplatforms_sandbox import CREDENTIALS

    output: Path = args.output.resolve()
    output.mkdir(parents=True, exist_ok=True)
    duckdb_path = output / "demo.duckdb"
    for stale in (duckdb_path, duckdb_path.with_name(duckdb_path.name + ".wal")):
        stale.unlink(missing_ok=True)
    meltano_log = output / "demo-meltano.log"
    meltano_log.unlink(missing_ok=True)

    install_started = time.time()
    if meltano_install(meltano_environment({}, duckdb_path), meltano_log, verbose=args.verbose):
        print(f"  installed in {time.time() - install_started:.1f} s", flush=True)

    print(f"Starting the sandbox (seed {args.seed}, scale {args.scale}) ...", flush=True)
    with sandbox(args.seed, args.scale, output / "demo-sandbox.log") as url:
        print(f"Sandbox at {url}; platforms: {', '.join(PLATFORMS)}", flush=True)
        env = meltano_environment(tap_environment(url, CREDENTIALS, output), duckdb_path)
        env.update(seeded_objects(args.seed, args.scale))
        run_started = time.time()
        run_logged(
            [MELTANO, "run", "--full-refresh", "--force", EXTRACTOR, LOADER],
            env,
            meltano_log,
            verbose=args.verbose,
        )
        print(f"  ran in {time.time() - run_started:.1f} s", flush=True)
        before = (table_counts(duckdb_path), table_columns(duckdb_path))
        # A day later: rows deleted, tables rewritten, new versions and columns.
        changes = change_sandbox(url)
        print("Sandbox changed; running again (incremental, from the first run's state) ...")
        run_started = time.time()
        run_logged(
            [MELTANO, "run", "--force", EXTRACTOR, LOADER],
            env,
            meltano_log,
            verbose=args.verbose,
        )
        print(f"  ran in {time.time() - run_started:.1f} s", flush=True)
    print_run_summary(output)
    after = table_counts(duckdb_path)
    summarize_change(changes, before, (after, table_columns(duckdb_path)))
    counts = after.live
    problems = summarize(counts, time.time() - started, duckdb_path)
    problems += skipped_problems(counts, meltano_log.read_text(errors="replace"))
    if problems:
        print("demo failed: " + "; ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
