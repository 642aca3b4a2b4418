"""End to end into a real PostgreSQL: ``meltano run tap-dataplatforms target-postgres``.

Real parts only: Meltano 4.4.1 from ``.venv-meltano`` (``make meltano``), the pinned
MeltanoLabs ``target-postgres``, a PostgreSQL server, and the sandbox serving all five
platforms. The sandbox runs inside this pytest process (Meltano and the tap are
subprocesses), so the tests move its data between two runs. Meltano's system database,
and so its state, lives in PostgreSQL as well (``MELTANO_DATABASE_URI``): each test gets a
database of its own, dropped at the end. Every check reads the loaded tables.

- ``test_full_then_incremental_run``: the first run's tables equal the sandbox's data by
  key for every stream the shipped definition selects, the per-object ones included (a
  Redivis table's rows, every Dexi dataset's rows, every InVision table's data, set
  through ``TAP_DATAPLATFORMS_*`` variables); the sandbox then gains Dexi executions,
  Re:infer comments, InVision log rows and changed Datalinx objects, and the second run
  writes only those (read from the rows' ``_sdc_batched_at``) and leaves exactly one row
  per key.
- ``test_killed_tap_resumes``: the tap is SIGKILLed mid-run; the next run completes and the
  tables equal the sandbox's data, one row per key.

The PostgreSQL server: ``E2E_POSTGRES_URL`` if set (``postgresql://user@host:port/db``,
used as is), else the local one on 127.0.0.1:5432 (started with ``pg_ctlcluster`` when it
is down), else a throwaway cluster made with ``initdb``/``pg_ctl``
(``E2E_POSTGRES_URL=initdb`` forces that). No server: a failure under ``CI=true``, a skip
elsewhere; the same for a missing Meltano.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dataplatforms_sandbox import CREDENTIALS, Sandbox
from tap_dataplatforms.core.naming import slug
from tests.reliability import sandbox_secrets, secret_hits
from tests.test_demo import _demo_module

pytestmark = pytest.mark.e2e

demo = _demo_module()
ROOT: Path = demo.ROOT
MELTANO: Path = demo.MELTANO
MELTANO_PYTHON = demo.MELTANO_VENV / "bin" / "python"
EXTRACTOR = "tap-dataplatforms"
LOADER = "target-postgres"
ENVIRONMENT = "e2e"  # meltano.yml: request budgets and batch size for these tests
SCHEMA = "tap_dataplatforms"
STATE_ID = f"{ENVIRONMENT}:{EXTRACTOR}-to-{LOADER}"
INSTALL_STAMP = ROOT / ".meltano" / ".e2e-postgres-installed"
LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/test"
RUN_TIMEOUT = 300.0
# Sandbox limits lifted: these tests are about the pipeline, not about waiting.
ROOMY = {name: (1_000_000, 60.0) for name in ("redivis", "dexi", "reinfer", "datalinx")}
# InVision's execution log without a start_date: the last 30 days before the sync starts.
INVISION_HISTORY = dt.timedelta(days=30)


def _missing(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


# --------------------------------------------------------------------------- PostgreSQL

_SQL = """
import json, sys
import psycopg
url, autocommit, statements = sys.argv[1], sys.argv[2] == "1", json.loads(sys.argv[3])
results = []
with psycopg.connect(url, autocommit=autocommit, connect_timeout=5) as con:
    for sql, params in statements:
        cur = con.execute(sql, params)
        rows = cur.fetchall() if cur.description else []
        results.append([[None if v is None else str(v) for v in row] for row in rows])
print(json.dumps(results))
"""


def sql(url: str, *statements: str | tuple[str, list[Any]], autocommit: bool = False) -> Any:
    """Run statements with psycopg in Meltano's environment (it has the driver); return
    each one's rows, every value as text."""
    batch = [(s, []) if isinstance(s, str) else s for s in statements]
    result = subprocess.run(
        [str(MELTANO_PYTHON), "-c", _SQL, url, "1" if autocommit else "0", json.dumps(batch)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"SQL failed: {result.stderr.strip().splitlines()[-1:]}")
    return json.loads(result.stdout)


def reachable(url: str) -> bool:
    try:
        sql(url, "select 1")
    except (RuntimeError, subprocess.TimeoutExpired):
        return False
    return True


def _start_local_cluster() -> None:
    versions = (
        sorted(p.name for p in Path("/etc/postgresql").glob("*"))
        if Path("/etc/postgresql").is_dir()
        else []
    )
    if not versions or shutil.which("pg_ctlcluster") is None:
        return
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"],
        capture_output=True,
        timeout=60,
        check=False,
    )


def _pg_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Throwaway:
    """A cluster of our own, in a temporary directory, trust authentication."""

    pg_ctl: str
    data: Path
    as_user: list[str]

    def stop(self) -> None:
        subprocess.run(
            [*self.as_user, self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
            check=False,
        )


def _throwaway_cluster(base: Path) -> tuple[str, Throwaway] | None:
    initdb, pg_ctl = _pg_binary("initdb"), _pg_binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        return None
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the cluster as postgres
        if shutil.which("runuser") is None:
            return None
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(base, "postgres")
    data, port = base / "data", _free_port()
    init = subprocess.run(
        [*as_user, initdb, "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"],
        capture_output=True,
        timeout=120,
        check=False,
    )
    if init.returncode != 0:
        return None
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off"
    start = subprocess.run(
        [*as_user, pg_ctl, "-D", str(data), "-o", options, "-l", str(base / "log"), "-w", "start"],
        capture_output=True,
        timeout=120,
        check=False,
    )
    cluster = Throwaway(pg_ctl, data, as_user)
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    if start.returncode != 0 or not reachable(url):
        cluster.stop()
        return None
    return url, cluster


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """A URL (``postgresql://...``) of a database on a running server we may create
    databases on."""
    if not MELTANO.exists():
        _missing(f"Meltano is not installed at {MELTANO.relative_to(ROOT)} (run `make meltano`)")
    if not reachable_driver():
        _missing(f"psycopg is missing from {demo.MELTANO_VENV.name} (run `make meltano`)")
    wanted = os.environ.get("E2E_POSTGRES_URL", "")
    if wanted and wanted != "initdb":
        if not reachable(wanted):
            _missing(f"no PostgreSQL server answers at E2E_POSTGRES_URL={wanted}")
        yield wanted
        return
    if not wanted:
        if not reachable(LOCAL_URL):
            _start_local_cluster()
        if reachable(LOCAL_URL):
            yield LOCAL_URL
            return
    # Not under pytest's temporary directory: as root the cluster runs as postgres, which
    # may not enter it.
    base = Path(tempfile.mkdtemp(prefix="tapdp-e2e-pg-"))
    try:
        made = _throwaway_cluster(base)
        if made is None:
            _missing("no PostgreSQL server on 127.0.0.1:5432 and none could be started (initdb)")
            return
        url, cluster = made
        try:
            yield url
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def reachable_driver() -> bool:
    result = subprocess.run(
        [str(MELTANO_PYTHON), "-c", "import psycopg"], capture_output=True, check=False
    )
    return result.returncode == 0


def _with_database(url: str, name: str, driver: str = "postgresql") -> str:
    base, _, _ = url.rpartition("/")
    return f"{base.replace('postgresql://', driver + '://', 1)}/{name}"


@pytest.fixture
def database(server: str) -> Iterator[str]:
    """A fresh database for one test (Meltano's system tables and the loaded tables)."""
    name = f"tapdp_e2e_{uuid.uuid4().hex[:12]}"
    sql(server, f'create database "{name}"', autocommit=True)
    try:
        yield _with_database(server, name)
    finally:
        sql(server, f'drop database if exists "{name}" with (force)', autocommit=True)


# --------------------------------------------------------------------------- Meltano


@dataclass
class Pipeline:
    sandbox: Sandbox
    url: str  # the test's database, psycopg form
    env: dict[str, str]
    log: Path

    def run(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return self._meltano(["run", *extra, EXTRACTOR, LOADER])

    def _meltano(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(MELTANO), *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
        with self.log.open("a") as log:
            log.write(f"$ meltano {' '.join(args)}\n{result.stdout}{result.stderr}")
        # No secret in Meltano's output either (tests/test_secrets.py scans the tap alone).
        hits = secret_hits(result.stdout + result.stderr, sandbox_secrets(self.sandbox))
        assert hits == [], f"secrets in the output of meltano {args[0]}: {hits}"
        return result

    def details(self) -> str:
        return f"--- meltano log (tail)\n{self.log.read_text()[-6000:]}"


def meltano_env(sandbox: Sandbox, url: str, output: Path) -> dict[str, str]:
    tap_env = demo.tap_environment(sandbox.url, CREDENTIALS, output)
    env: dict[str, str] = demo.meltano_environment(tap_env, output / "unused.duckdb")
    # The demo keeps its state in a directory of its own; here the state is Meltano's, in
    # PostgreSQL with its system database, where the tests read it.
    env.pop("MELTANO_STATE_BACKEND_URI", None)
    # The streams are those the shipped definition selects (every stream but the
    # side-effect one, invision_dataflow_runs), not the demo's own list.
    env.pop("TAP_DATAPLATFORMS__SELECT", None)
    sqlalchemy_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    env.update(
        {
            "MELTANO_ENVIRONMENT": ENVIRONMENT,
            "MELTANO_DATABASE_URI": sqlalchemy_url,
            # A string setting: Meltano 4.4.1 cannot take a number from the environment.
            "TARGET_POSTGRES_SQLALCHEMY_URL": sqlalchemy_url,
            "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": SCHEMA,
        }
    )
    return env


def ensure_plugins(env: Mapping[str, str], log: Path) -> None:
    """``meltano install`` the two plugins unless meltano.yml and pyproject.toml are
    unchanged since the last install."""
    fingerprint = demo._install_fingerprint()
    venvs = [
        ROOT / ".meltano" / kind / name / "venv"
        for kind, name in (("extractors", EXTRACTOR), ("loaders", LOADER))
    ]
    installed = all(v.exists() for v in venvs) and INSTALL_STAMP.exists()
    if installed and INSTALL_STAMP.read_text().strip() == fingerprint:
        return
    demo.run_logged([MELTANO, "install", EXTRACTOR, LOADER], env, log, verbose=False)
    INSTALL_STAMP.write_text(fingerprint + "\n")


@pytest.fixture
def pipeline(database: str, tmp_path: Path) -> Iterator[Pipeline]:
    sandbox = Sandbox(seed=3, scale=1, limits=ROOMY).start()
    sandbox.datalinx.burst = (1_000_000, 1_000_000.0)
    try:
        # The per-object streams too: a Redivis table's rows (kept small), every Dexi
        # dataset's rows and every InVision table's data.
        table = rows_table(sandbox)
        table.num_rows = ROWS_TABLE_SIZE
        env = meltano_env(sandbox, database, tmp_path)
        env["TAP_DATAPLATFORMS_REDIVIS_TABLES"] = json.dumps([table.qualified_reference])
        env["TAP_DATAPLATFORMS_DEXI_DATASET_IDS"] = json.dumps(list(sandbox.dexi.datasets))
        env["TAP_DATAPLATFORMS_INVISION_TABLES"] = json.dumps(list(sandbox.invision.tables))
        log = tmp_path / "meltano.log"
        ensure_plugins(env, log)
        yield Pipeline(sandbox, database, env, log)
    finally:
        sandbox.stop()


# --------------------------------------------------------------------------- expectations


def _file_id(cell: str) -> str:
    return cell.split(";", 2)[2]  # FILE:<content type>;<size>;<file id>


ROWS_TABLE_SIZE = 300


def rows_table(sb: Sandbox) -> Any:
    """The Redivis table whose rows the runs extract (setting redivis.tables)."""
    return next(
        table
        for ds in sb.redivis.datasets_by_owner["demo"]
        if ds.may("data")
        for table in ds.current_tables
    )


def object_row_keys(sb: Sandbox) -> dict[str, set[tuple[str, ...]]]:
    """The tables of the per-object streams the ``pipeline`` fixture configures: each Dexi
    dataset's rows by ``_row_index``; each InVision table (no key) as its live rows'
    numbers 1..n (see ``loaded``), so that its row count is what is compared."""
    keys: dict[str, set[tuple[str, ...]]] = {
        f"dexi_dataset_rows__{slug(dataset)}": {(str(i),) for i in range(len(rows))}
        for dataset, rows in sb.dexi.datasets.items()
    }
    for table, rows in sb.invision.tables.items():
        keys[f"invision_table__{slug(table)}"] = {(str(n),) for n in range(1, len(rows) + 1)}
    return keys


def expected_keys(sb: Sandbox) -> dict[str, set[tuple[str, ...]]]:
    """Every stream's keys (as text) from the sandbox's own data. The Dexi result tables
    are one entry, ``dexi_results__*``; InVision's log is checked apart (a time window)."""
    redivis = demo.PLATFORMS["redivis"].settings
    owners = [*redivis["organizations"], *redivis["users"]]
    datasets = [ds for name in owners for ds in sb.redivis.datasets_by_owner[name]]
    tables = [t for ds in datasets if ds.may("metadata") for t in ds.current_tables]
    dexi = sb.dexi
    finished = dexi.finished_executions()
    # A result gone for good (the default sandbox has one) is skipped, files and all.
    readable = dexi.readable_results()
    cells = [c for e in readable for row in e.rows for c in row]
    reinfer = sb.reinfer
    expected: dict[str, set[tuple[str, ...]]] = {
        "redivis_datasets": {(ds.id,) for ds in datasets},
        "redivis_tables": {(t.qualified_reference,) for t in tables},
        "redivis_variables": {(t.qualified_reference, v.name) for t in tables for v in t.variables},
        "dexi_runs": {(run.id,) for run in dexi.runs},
        "dexi_executions": {(e.id,) for e in finished},
        "dexi_results__*": {(e.id, str(i)) for e in readable for i in range(len(e.rows))},
        "dexi_files": {
            (_file_id(c),) for c in cells if isinstance(c, str) and c.startswith("FILE:")
        },
        "reinfer_projects": {(p["name"],) for p in reinfer.projects},
        "reinfer_datasets": {(i,) for i in reinfer.datasets},
        "reinfer_sources": {(i,) for i in reinfer.sources},
        "reinfer_comments": reinfer.comment_keys(),
        "reinfer_labellings": reinfer.labelling_keys(),
        "reinfer_streams": {(s["id"],) for d in reinfer.datasets.values() for s in d.streams},
        "reinfer_predictions": {(d, u, str(v)) for d, u, v in reinfer.predicted_keys()},
    }
    for stream in demo.PLATFORMS["datalinx"].streams:
        keys = sb.datalinx.keys(stream.removeprefix("datalinx_"))
        expected[stream] = {k if isinstance(k, tuple) else (k,) for k in keys}
    return expected


KEY_COLUMNS: dict[str, tuple[str, ...]] = {
    "redivis_datasets": ("id",),
    "redivis_tables": ("qualifiedReference",),
    "redivis_variables": ("table_reference", "name"),
    "dexi_runs": ("_id",),
    "dexi_executions": ("_id",),
    "dexi_results__*": ("_execution_id", "_row_index"),
    "redivis_rows__*": ("_row_number",),
    "dexi_files": ("file_id",),
    "invision_execution_log": ("rowid",),
    "reinfer_projects": ("name",),
    "reinfer_datasets": ("id",),
    "reinfer_sources": ("id",),
    "reinfer_comments": ("source_id", "id"),
    "reinfer_labellings": ("dataset_id", "uid"),
    "reinfer_streams": ("id",),
    "reinfer_predictions": ("dataset_id", "uid", "model_version"),
    "datalinx_workspaces": ("id",),
    "datalinx_users": ("id",),
    "datalinx_roles": ("id",),
    "datalinx_service_accounts": ("id",),
}


def key_columns(table: str) -> tuple[str, ...]:
    """The key columns of a loaded table; none for a keyless one (an InVision table)."""
    if table.startswith("dexi_dataset_rows__"):
        return ("_row_index",)
    if table.startswith("invision_table__"):
        return ()
    group = _group(table)
    return KEY_COLUMNS.get(group, ("workspace", "id"))


def test_key_columns_are_the_streams_primary_keys() -> None:
    """The columns read as keys here are the tap's primary keys (discovered offline)."""
    from tap_dataplatforms.datalinx import streams as datalinx
    from tap_dataplatforms.dexi import streams as dexi
    from tap_dataplatforms.invision import streams as invision
    from tap_dataplatforms.redivis import streams as redivis
    from tap_dataplatforms.reinfer import predictions
    from tap_dataplatforms.reinfer import streams as reinfer

    named: dict[str, tuple[str, ...]] = {}
    for module in (datalinx, dexi, invision, redivis, reinfer, predictions):
        for cls in vars(module).values():
            name: Any = getattr(cls, "name", None)
            keys: Any = getattr(cls, "primary_keys", None)
            own = isinstance(cls, type) and cls.__module__ == module.__name__
            if own and keys and isinstance(name, str):
                named[name] = tuple(keys)
    streams = [s for s in [*KEY_COLUMNS, *demo.PLATFORMS["datalinx"].streams] if "*" not in s]
    assert set(streams) <= set(named), set(streams) - set(named)
    for stream in streams:
        assert key_columns(stream) == named[stream], stream


@dataclass
class Loaded:
    keys: dict[str, list[tuple[str, ...]]]  # table -> key of every row
    batched_after: dict[str, set[tuple[str, ...]]]  # table -> keys of rows written after t


def loaded(url: str, since: dt.datetime | None = None, schema: str = SCHEMA) -> Loaded:
    """Read every table of ``schema``: each row's key, and the keys of rows the target
    wrote after ``since`` (``_sdc_batched_at``, the target's clock, UTC)."""
    (tables,) = sql(
        url,
        (
            "select table_name from information_schema.tables where table_schema = %s "
            "order by table_name",
            [schema],
        ),
    )
    names = [name for (name,) in tables]
    stamp = (since or dt.datetime(1970, 1, 1, tzinfo=dt.UTC)).astimezone(dt.UTC)
    statements: list[tuple[str, list[Any]]] = []
    for name in names:
        cols = ", ".join(f'"{c}"' for c in key_columns(name))
        live = ""
        if not cols:
            # A keyless table is replaced each run (ACTIVATE_VERSION): its live rows, by
            # number, stand for its content.
            cols, live = "row_number() over ()", " and _sdc_deleted_at is null"
        statements.append(
            (f'select {cols} from "{schema}"."{name}" where true{live}', [])  # noqa: S608
        )
        statements.append(
            (
                f'select {cols} from "{schema}"."{name}" '  # noqa: S608
                f"where _sdc_batched_at > %s::timestamp{live}",
                [stamp.replace(tzinfo=None).isoformat()],
            )
        )
    rows = sql(url, *statements)
    result = Loaded({}, {})
    for n, name in enumerate(names):
        result.keys[name] = [tuple(r) for r in rows[2 * n]]
        result.batched_after[name] = {tuple(r) for r in rows[2 * n + 1]}
    return result


def _group(table: str) -> str:
    for prefix in ("dexi_results__", "redivis_rows__"):
        if table.startswith(prefix):
            return prefix + "*"
    return table


def grouped(tables: Mapping[str, Any]) -> dict[str, list[tuple[str, ...]]]:
    """Table -> keys, the Dexi result tables folded into ``dexi_results__*``."""
    out: dict[str, list[tuple[str, ...]]] = {}
    for name, keys in tables.items():
        out.setdefault(_group(name), []).extend(keys)
    return out


def assert_equals_sandbox(
    sb: Sandbox, got: Loaded, started: float, ended: float, *, object_rows: bool = True
) -> None:
    """Every stream's table holds exactly the sandbox's keys, one row each.

    ``started`` and ``ended`` bound the sync that first read InVision's log;
    ``object_rows``: whether the run was configured with the per-object streams (a
    Redivis table's rows, the Dexi datasets' rows, the InVision tables), as by the
    ``pipeline`` fixture."""
    tables = grouped(got.keys)
    for name, keys in tables.items():
        dupes = [k for k, n in Counter(keys).items() if n > 1]
        assert not dupes, f"{name}: {len(dupes)} keys on more than one row, e.g. {dupes[:3]}"
    expected = expected_keys(sb)
    if object_rows:
        expected.update(object_row_keys(sb))
    for name, want in expected.items():
        have = set(tables.get(name, []))
        assert want, f"{name}: the sandbox has no data for it (test setup)"
        assert have == want, (
            f"{name}: {len(have)} keys loaded, {len(want)} in the sandbox; "
            f"missing {sorted(want - have)[:3]}, unexpected {sorted(have - want)[:3]}"
        )
    # A route the sandbox's Datalinx instance lacks: skipped with a warning, no table.
    for platform in demo.PLATFORMS.values():
        for name in platform.skipped:
            assert name not in tables, f"{name}: loaded, though the sandbox has no route for it"
    # InVision's log: the rows since 30 days before the sync start, which lies between
    # `started` and `ended`; a row in the rim between both bounds may go either way.
    rows = {str(r["rowid"]): r for r in sb.invision.execution_rows()}
    have_log = {k for (k,) in tables.get("invision_execution_log", [])}
    assert have_log <= set(rows), sorted(have_log - set(rows))[:3]
    history = INVISION_HISTORY.total_seconds()
    for rowid, row in rows.items():
        at = dt.datetime.fromisoformat(row["timestamputc"] + "+00:00").timestamp()
        if at >= ended - history:
            assert rowid in have_log, f"invision_execution_log: row {rowid} missing"
        elif at < started - history - 1:
            assert rowid not in have_log, f"invision_execution_log: row {rowid} too old"
    assert len(have_log) > 100
    # Redivis rows: every row of the configured table, once (no duplicate key, above).
    # The row numbers follow the read streams' split, so the count is what is compared
    # here; tests/test_redivis_oracle.py compares the rows themselves.
    if not object_rows:
        assert set(tables) == {*expected, "invision_execution_log"}
        return
    rows_loaded = tables.get("redivis_rows__*", [])
    assert len(rows_loaded) == rows_table(sb).num_rows, len(rows_loaded)
    assert set(tables) == {*expected, "invision_execution_log", "redivis_rows__*"}


# --------------------------------------------------------------------------- the tests


def _timed_run(p: Pipeline, *extra: str) -> tuple[float, float]:
    started = time.time()
    result = p.run(*extra)
    ended = time.time()
    assert result.returncode == 0, f"meltano run failed ({result.returncode})\n{p.details()}"
    return started, ended


def meltano_state(p: Pipeline) -> dict[str, Any]:
    """Meltano's stored state for the run, read from its system tables in PostgreSQL."""
    (rows,) = sql(
        p.url,
        ("select completed_state, partial_state from state where state_id = %s", [STATE_ID]),
    )
    assert rows, f"no state row for {STATE_ID} in PostgreSQL"
    completed, partial = rows[0]
    return {"completed": json.loads(completed or "{}"), "partial": json.loads(partial or "{}")}


def meltano_runs(p: Pipeline) -> list[str]:
    """The outcome of every run of the job, oldest first, from Meltano's ``runs`` table."""
    (rows,) = sql(
        p.url, ("select state from runs where job_name = %s order by started_at", [STATE_ID])
    )
    return [state for (state,) in rows]


def test_full_then_incremental_run(pipeline: Pipeline) -> None:
    sb = pipeline.sandbox
    started, ended = _timed_run(pipeline)
    # The shipped definition's default selection leaves out the side-effect stream.
    (tables,) = sql(
        pipeline.url,
        ("select table_name from information_schema.tables where table_schema = %s", [SCHEMA]),
    )
    assert "invision_dataflow_runs" not in [name for (name,) in tables]
    assert_equals_sandbox(sb, loaded(pipeline.url), started, ended)
    bookmarks = meltano_state(pipeline)["completed"]["singer_state"]["bookmarks"]
    assert {"reinfer_comments", "invision_execution_log", "dexi_executions"} <= set(bookmarks)

    # The platforms move on.
    new_executions = sb.dexi.advance(new_executions=2)
    new_comments = set(sb.reinfer.advance(count=3))
    new_log_rows: set[tuple[str, ...]] = {(str(r["rowid"]),) for r in sb.invision.advance(rows=4)}
    before = {
        stream: sb.datalinx.keys(stream.removeprefix("datalinx_"))
        for stream in demo.PLATFORMS["datalinx"].streams
    }
    since = sb.datalinx.advance(new=1, changed=1)
    assert new_executions
    assert new_comments
    assert new_log_rows

    # The target's clock is this machine's: rows written after `mark` are the second run's.
    time.sleep(0.01)
    mark = dt.datetime.now(dt.UTC)
    _timed_run(pipeline)
    got = loaded(pipeline.url, since=mark)
    assert_equals_sandbox(sb, got, started, ended)  # InVision's window: the first run's

    written = {name: set(keys) for name, keys in grouped(got.batched_after).items()}
    # Incremental streams: only what is new or changed since the first run, plus at most
    # the records at the first run's bookmarks (bookmarks are inclusive: ties re-read).
    again = at_bookmarks(sb, bookmarks)
    assert_written(written, "reinfer_comments", new_comments, again["reinfer_comments"])
    assert_written(written, "invision_execution_log", new_log_rows, again["invision_execution_log"])
    assert_written(written, "dexi_executions", {(e.id,) for e in new_executions})
    assert_written(
        written,
        "dexi_results__*",
        {(e.id, str(i)) for e in new_executions for i in range(len(e.rows))},
    )
    incremental = [stream for stream in before if stream in again]
    assert len(incremental) >= 5, incremental  # the others are full-table: all rows again
    for stream, old in before.items():
        name = stream.removeprefix("datalinx_")
        if stream not in incremental:
            continue
        now = sb.datalinx.keys(name)
        fresh = {k if isinstance(k, tuple) else (k,) for k in now - old}
        assert fresh, stream
        assert_written(written, stream, fresh | changed_keys(sb, name, since), again[stream])
    assert meltano_runs(pipeline) == ["SUCCESS", "SUCCESS"]
    state = meltano_state(pipeline)["completed"]["singer_state"]["bookmarks"]
    assert state["reinfer_comments"] != bookmarks["reinfer_comments"]


def assert_written(
    written: Mapping[str, set[tuple[str, ...]]],
    name: str,
    want: set[tuple[str, ...]],
    may: set[tuple[str, ...]] | None = None,
) -> None:
    """The second run wrote every key of ``want`` and nothing beyond ``want | may``."""
    have = written.get(name, set())
    extra = have - want - (may or set())
    message = (
        f"{name}: the second run wrote {len(have)} rows, {len(want)} expected; "
        f"missing {sorted(want - have)[:3]}, unexpected {sorted(extra)[:3]}"
    )
    assert want <= have, message
    assert not extra, message


def _floor(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp).replace(microsecond=0)


def _partition_marks(bookmark: Mapping[str, Any], key: str) -> dict[str, dt.datetime]:
    return {
        p["context"][key]: _floor(p["replication_key_value"])
        for p in bookmark.get("partitions", [])
        if p.get("replication_key_value")
    }


def at_bookmarks(sb: Sandbox, bookmarks: Mapping[str, Any]) -> dict[str, set[tuple[str, ...]]]:
    """Per incremental stream, the records at or after its first-run bookmark (to the
    second), which a rerun may read again."""
    from dataplatforms_sandbox.datalinx import record_key

    marks = _partition_marks(bookmarks["reinfer_comments"], "source_id")
    out: dict[str, set[tuple[str, ...]]] = {
        "reinfer_comments": {
            (source.id, c.id)
            for source in sb.reinfer.sources.values()
            if source.id in marks
            for c in source.comments
            if c.timestamp >= marks[source.id]
        }
    }
    log_mark = _floor(bookmarks["invision_execution_log"]["replication_key_value"]).timestamp()
    out["invision_execution_log"] = {(str(r.rowid),) for r in sb.invision.log if r.at >= log_mark}
    for stream in demo.PLATFORMS["datalinx"].streams:
        name = stream.removeprefix("datalinx_")
        if "partitions" not in bookmarks.get(stream, {}):
            continue
        by_id = _partition_marks(bookmarks[stream], "workspace_id")
        marks = {ws["name"]: by_id[ws["id"]] for ws in sb.datalinx.workspaces if ws["id"] in by_id}
        out[stream] = {
            (ws, record_key(name, r))
            for ws, resources in sb.datalinx.scoped.items()
            for r in resources[name]
            if ws in marks and dt.datetime.fromisoformat(r["updated_at"]) >= marks[ws]
        }
    return out


def changed_keys(sb: Sandbox, name: str, since: dt.datetime) -> set[tuple[str, ...]]:
    """Keys of the Datalinx records of ``name`` updated at or after ``since``."""
    from dataplatforms_sandbox.datalinx import record_key

    stamp = since.isoformat()
    if name == "pipeline_runs":
        return set()
    return {
        (ws, record_key(name, r))
        for ws, resources in sb.datalinx.scoped.items()
        for r in resources[name]
        if dt.datetime.fromisoformat(r["updated_at"]) >= dt.datetime.fromisoformat(stamp)
    }


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _cmdline(pid: int) -> list[str]:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def find_syncing_tap(root: int) -> int | None:
    """The tap process (not its discovery) among the descendants of ``root``."""
    todo = [root]
    while todo:
        pid = todo.pop()
        kids = _children(pid)
        todo += kids
        args = _cmdline(pid)
        if any(Path(a).name == EXTRACTOR for a in args[:2]) and "--catalog" in args:
            return pid
    return None


def test_killed_tap_resumes(pipeline: Pipeline) -> None:
    sb = pipeline.sandbox
    env = pipeline.env
    killed_started = time.time()
    with pipeline.log.open("a") as log:
        proc = subprocess.Popen(
            [str(MELTANO), "run", EXTRACTOR, LOADER],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        killed = None
        baseline: int | None = None  # Dexi requests before the sync (discovery's)
        try:
            deadline = time.monotonic() + RUN_TIMEOUT
            while proc.poll() is None and time.monotonic() < deadline:
                tap = find_syncing_tap(proc.pid)
                if tap is not None:
                    if baseline is None:
                        baseline = len(sb.request_log("dexi"))
                    # Mid-run: Datalinx is read, Dexi's executions are being read.
                    elif len(sb.request_log("dexi")) >= baseline + 100:
                        os.kill(tap, signal.SIGKILL)
                        killed = tap
                        break
                time.sleep(0.05)
            proc.wait(timeout=RUN_TIMEOUT)
        finally:
            demo._stop(proc)
    assert killed is not None, f"the tap finished before it could be killed\n{pipeline.details()}"
    assert proc.returncode != 0, pipeline.details()
    partial = loaded(pipeline.url)
    assert sum(len(v) for v in partial.keys.values()) < sum(
        len(v) for v in (expected_keys(sb) | object_row_keys(sb)).values()
    ), "the killed run loaded everything: the kill came too late"
    assert sum(len(v) for v in partial.keys.values()) > 0, "the target flushed nothing"
    # What the target confirmed before the tap died is Meltano's (incremental) state.
    stored = meltano_state(pipeline)
    assert (stored["partial"] or stored["completed"]).get("singer_state", {}).get("bookmarks")

    _, ended = _timed_run(pipeline)
    assert_equals_sandbox(sb, loaded(pipeline.url), killed_started, ended)
    assert meltano_runs(pipeline) == ["FAIL", "SUCCESS"]
