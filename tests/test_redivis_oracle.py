"""The official Redivis client (the `redivis` package) reads exactly what the sandbox holds.

The client runs in its own environment, .venv-oracle (`make oracle`, pinned in
tests/oracle/requirements.txt), pointed at the sandbox through REDIVIS_API_ENDPOINT. It
reads through read sessions with several streams, in the sandbox's default mode: some
streams end early without the end-of-stream batch and rows are split unevenly, so the
client has to resume them. Whatever it reads must equal the sandbox's own rows; a
sandbox the official client cannot read does not model the real API. The tap, reading the
same tables, must emit the same rows.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dataplatforms_sandbox import CREDENTIALS, Sandbox
from tap_dataplatforms.core.naming import slug
from tests.helpers import make_tap, run_sync

ROOT = Path(__file__).resolve().parent.parent
ORACLE_PYTHON = ROOT / ".venv-oracle" / "bin" / "python"
SCRIPT = ROOT / "tests" / "oracle" / "read_redivis.py"
ALL_BUT_GEOGRAPHY = {"integer", "float", "boolean", "date", "dateTime", "time", "string"}
ARROW_TYPES = {
    "integer": "int64",
    "float": "double",
    "boolean": "bool",
    "date": "date32[day]",
    "dateTime": "timestamp[us]",
    "time": "time64[us]",
    "string": "string",
    "geography": "string",
}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    sb = Sandbox(seed=1, scale=1, limits={"redivis": (100_000, 60.0)}).start()
    yield sb
    sb.stop()


def oracle_python() -> Path:
    if not ORACLE_PYTHON.exists():
        message = f"{ORACLE_PYTHON} is missing: run `make oracle`"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return ORACLE_PYTHON


def plain(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return value


def as_tap_value(value: Any, variable_type: str) -> Any:
    """A value the client wrote (ISO text) in the form the tap emits it."""
    if value is None:
        return None
    if variable_type == "dateTime":
        return dt.datetime.fromisoformat(value).isoformat(timespec="microseconds") + "+00:00"
    if variable_type == "time":
        return dt.time.fromisoformat(value).isoformat(timespec="microseconds")
    return value


def demo_tables(sb: Sandbox, count: int) -> list[Any]:
    """Readable demo tables with a variable of every type but geography (or more)."""
    found = [
        table
        for ds in sb.redivis.datasets_by_owner["demo"]
        if ds.may("data")
        for table in ds.current_tables
        if {v.type for v in table.variables} >= ALL_BUT_GEOGRAPHY
    ]
    assert len(found) >= count
    return found[:count]


def read_with_client(sandbox: Sandbox, specs: list[str], out: Path, **env_extra: str) -> None:
    env = {
        **os.environ,
        "REDIVIS_API_ENDPOINT": sandbox.base_url("redivis"),
        "REDIVIS_API_TOKEN": CREDENTIALS["redivis"]["token"],
        **env_extra,
    }
    done = subprocess.run(
        [str(oracle_python()), str(SCRIPT), str(out), *specs],
        env=env,
        capture_output=True,
        text=True,
        # a guard against a hung client, not a measure: its imports (pandas, polars,
        # dask) alone take a minute on a busy 2-core machine
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]


def client_rows(out: Path) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, str]]]:
    rows: dict[str, list[dict[str, Any]]] = {}
    types: dict[str, dict[str, str]] = {}
    for line in out.read_text().splitlines():
        item = json.loads(line)
        if "types" in item:
            types[item["table"]] = item["types"]
        else:
            rows.setdefault(item["table"], []).append(item["row"])
    return rows, types


def assert_same_rows(sandbox: Sandbox, out: Path, specs: dict[str, Any]) -> None:
    sessions = sandbox.platform("redivis").read_sessions
    rows, types = client_rows(out)
    for spec, table in specs.items():
        assert types[spec] == {v.name: ARROW_TYPES[v.type] for v in table.variables}
        key = table.variables[0].name  # `<table>_id`, the row position + 1
        expected = sorted(
            ({k: plain(v) for k, v in row.items()} for row in sessions.rows(table)),
            key=lambda row: row[key],
        )
        got = sorted(rows[spec], key=lambda row: row[key])
        assert len(got) == table.num_rows, spec
        assert got == expected, spec


def test_official_client_reads_small_tables_in_one_request(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """The client's default for tables under 1e8 bytes: one GET /tables/{ref}/rows."""
    oracle_python()
    table = demo_tables(sandbox, 3)[2]
    table.num_rows = 800
    table.num_bytes = 800 * 100
    spec = f"organization:demo:{table.dataset.name}:{table.name}"
    sandbox.clear_log()
    out = tmp_path / "oracle.jsonl"
    read_with_client(sandbox, [spec], out, ORACLE_FORCE_READ_SESSIONS="0")
    assert_same_rows(sandbox, out, {spec: table})
    paths = [entry["path"] for entry in sandbox.request_log("redivis")]
    assert any(path.endswith("/rows") for path in paths), paths
    assert not any(path.endswith("/readSessions") for path in paths), paths


def test_official_client_reads_exactly_the_sandbox_rows(sandbox: Sandbox, tmp_path: Path) -> None:
    oracle_python()
    small, split = demo_tables(sandbox, 2)
    small.num_rows = 1_500  # the model serves whatever size it holds
    split.num_rows = 20_000
    specs = {f"organization:demo:{t.dataset.name}:{t.name}": t for t in (small, split)}
    sessions = sandbox.platform("redivis").read_sessions
    reads_before = len(sessions.reads)
    out = tmp_path / "oracle.jsonl"
    read_with_client(sandbox, list(specs), out)
    assert_same_rows(sandbox, out, specs)

    # The split table really came in several streams, and some were reopened after an
    # early end (more reads than streams).
    reads = sessions.reads[reads_before:]
    streams = {stream_id for stream_id, _ in reads}
    split_key = f"{split.dataset.id}/{split.reference_id}"
    split_sessions = [s for s in sessions.sessions.values() if s.table_key == split_key]
    assert len(split_sessions) == 1
    assert len(split_sessions[0].streams) >= 3
    assert any(offset > 0 for _, offset in reads), reads
    assert len(reads) > len(streams)

    # The tap reads the same rows as the official client (in its own output forms).
    rows, _ = client_rows(out)
    config = {
        "redivis": {
            "api_url": sandbox.base_url("redivis"),
            "token": CREDENTIALS["redivis"]["token"],
            "tables": [t.qualified_reference for t in specs.values()],
            "read_streams": 4,
            "max_requests_per_second": 200,
        }
    }
    synced = run_sync(make_tap(config))
    for spec, table in specs.items():
        key = table.variables[0].name
        kinds = {v.name: v.type for v in table.variables}
        records = synced.records[f"redivis_rows__{slug(table.name)}"]
        tap_rows = sorted(
            ({k: v for k, v in r.items() if k != "_row_number"} for r in records),
            key=lambda row: row[key],
        )
        client = sorted(
            ({k: as_tap_value(v, kinds[k]) for k, v in row.items()} for row in rows[spec]),
            key=lambda row: row[key],
        )
        assert tap_rows == client, spec
