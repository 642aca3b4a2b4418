"""Redivis table rows through read sessions: completeness, types, resume, renewal, layouts."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

from dataplatforms_sandbox import CREDENTIALS, Sandbox
from tap_dataplatforms.core import readahead
from tap_dataplatforms.core.errors import SyncFailedError
from tap_dataplatforms.core.http import PlatformStream
from tap_dataplatforms.core.naming import slug
from tap_dataplatforms.redivis.rows import to_json_ready
from tests.helpers import make_tap, run_sync


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PlatformStream, "retry_base_seconds", 0.01)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    sb = Sandbox(seed=3, scale=1, limits={"redivis": (100_000, 60.0)}).start()
    yield sb
    sb.stop()


def find_table(sb: Sandbox, *, rows: int, skip: int = 0) -> Any:
    """A readable table with a variable of every type, sized to ``rows`` for the test."""
    found = [
        table
        for owner in ("demo", "jdoe")
        for ds in sb.redivis.datasets_by_owner[owner]
        if ds.may("data")
        for table in ds.current_tables
        if len({v.type for v in table.variables}) == 8
    ]
    table = found[skip]
    table.num_rows = rows  # the model serves whatever size it holds
    return table


def config(sb: Sandbox, tables: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "redivis": {
            "api_url": sb.base_url("redivis"),
            "token": CREDENTIALS["redivis"]["token"],
            "tables": tables,
            "max_requests_per_second": 200,
            **extra,
        }
    }


def as_json(value: Any) -> Any:
    # Arrow renders microsecond columns with all six digits, zeros included.
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="microseconds") + "+00:00"
    if isinstance(value, dt.time):
        return value.isoformat(timespec="microseconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def expected_rows(sb: Sandbox, table: Any) -> dict[int, dict[str, Any]]:
    """The sandbox's rows as the contract says they leave the tap, by the id column."""
    key = table.variables[0].name  # `<table>_id`, the row position + 1
    rows = sb.platform("redivis").read_sessions.rows(table)
    return {row[key]: {k: as_json(v) for k, v in row.items()} for row in rows}


def rows_by_id(records: list[dict[str, Any]], key: str) -> dict[int, dict[str, Any]]:
    out = {}
    for record in records:
        row = {k: v for k, v in record.items() if k != "_row_number"}
        assert row[key] not in out, f"duplicate row {row[key]}"
        out[row[key]] = row
    return out


def stream_name(table: Any) -> str:
    return f"redivis_rows__{slug(table.name)}"


@pytest.mark.parametrize("read_streams", [1, 4])
def test_rows_equal_the_table_typed_from_variables(sandbox: Sandbox, read_streams: int) -> None:
    table = find_table(sandbox, rows=12_000)
    tap = make_tap(config(sandbox, [table.qualified_reference], read_streams=read_streams))
    out = run_sync(tap)
    records = out.records[stream_name(table)]
    key = table.variables[0].name
    assert rows_by_id(records, key) == expected_rows(sandbox, table)
    # unique (streams split rows unevenly, so the interleaved numbers may leave gaps)
    numbers = [r["_row_number"] for r in records]
    assert len(set(numbers)) == len(numbers) == table.num_rows
    schema = out.schemas[stream_name(table)]["properties"]
    for variable in table.variables:
        expected_type = {
            "integer": "integer",
            "float": "number",
            "boolean": "boolean",
        }.get(variable.type, "string")
        assert schema[variable.name]["type"] == [expected_type, "null"]
    assert schema[next(v.name for v in table.variables if v.type == "dateTime")]["format"] == (
        "date-time"
    )
    sessions = sandbox.platform("redivis").read_sessions.sessions.values()
    assert max(len(s.streams) for s in sessions) == read_streams


def test_rows_are_read_when_the_shared_pool_is_busy_elsewhere(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another use holds every thread of the one pool for the whole sync: the table's
    # read streams are read by the sync's own thread instead of waited for.
    table = find_table(sandbox, rows=3_000, skip=2)
    tap = make_tap(config(sandbox, [table.qualified_reference], read_streams=3))
    monkeypatch.setattr(readahead, "shutdown", lambda wait=True: None)
    release = threading.Event()
    hog = readahead.Lane(readahead.size())
    held = [hog.start(release.wait, 30) for _ in range(readahead.size())]
    started = time.monotonic()
    try:
        out = run_sync(tap)
        # Not after the other use let go (30 s).
        assert time.monotonic() - started < 20
    finally:
        release.set()
        hog.close()
        monkeypatch.undo()
        readahead.shutdown()
    assert all(f.result() for f in held)
    key = table.variables[0].name
    assert rows_by_id(out.records[stream_name(table)], key) == expected_rows(sandbox, table)


def test_a_cut_stream_resumes_at_its_offset(sandbox: Sandbox) -> None:
    table = find_table(sandbox, rows=16_000, skip=1)
    sessions = sandbox.platform("redivis").read_sessions
    sessions.cut_next_reads(after_rows=5_000, count=2)
    reads_before = len(sessions.reads)
    tap = make_tap(config(sandbox, [table.qualified_reference], read_streams=2))
    out = run_sync(tap)
    key = table.variables[0].name
    assert rows_by_id(out.records[stream_name(table)], key) == expected_rows(sandbox, table)
    resumed = [offset for _, offset in sessions.reads[reads_before:] if offset]
    assert resumed  # at least one stream came back with ?offset= the rows already read
    assert tap.runtime.counters["redivis.retries"] >= 2


def test_max_retries_zero_fails_a_cut_stream_instead_of_resuming(sandbox: Sandbox) -> None:
    # The read streams' resumptions count against max_retries like any retry: a valid 0
    # is 0 (it was once read as "unset" and became 7).
    table = find_table(sandbox, rows=16_000, skip=1)
    sessions = sandbox.platform("redivis").read_sessions
    sessions.cut_next_reads(after_rows=5_000, count=1)
    settings = config(sandbox, [table.qualified_reference], read_streams=1)
    tap = make_tap({**settings, "max_retries": 0})
    with pytest.raises(SyncFailedError, match="kept breaking"):
        run_sync(tap)
    assert tap.runtime.counters["redivis.retries"] == 0


def test_an_expired_session_is_renewed_and_reading_resumes(sandbox: Sandbox) -> None:
    table = find_table(sandbox, rows=16_000, skip=1)
    sessions = sandbox.platform("redivis").read_sessions
    before = len(sessions.sessions)
    # Fewer rows than either stream holds, even one that ends early: whichever stream
    # asks first is cut, and the session expires.
    sessions.cut_next_reads(after_rows=1_000, count=1, expire=True)
    tap = make_tap(config(sandbox, [table.qualified_reference], read_streams=2))
    out = run_sync(tap)
    key = table.variables[0].name
    assert rows_by_id(out.records[stream_name(table)], key) == expected_rows(sandbox, table)
    assert len(sessions.sessions) - before == 2  # the first session, then its renewal


def test_deselected_columns_are_not_requested(sandbox: Sandbox) -> None:
    table = find_table(sandbox, rows=5_000, skip=2)
    tap = make_tap(config(sandbox, [table.qualified_reference]))
    catalog = tap.catalog_dict
    dropped = table.variables[-1].name
    for entry in catalog["streams"]:
        entry_selected = entry["tap_stream_id"] == stream_name(table)
        for item in entry["metadata"]:
            if item["breadcrumb"] == []:
                item["metadata"]["selected"] = entry_selected
            elif item["breadcrumb"] == ["properties", dropped]:
                item["metadata"]["selected"] = False
    tap = make_tap(config(sandbox, [table.qualified_reference]), catalog=catalog)
    sessions = sandbox.platform("redivis").read_sessions
    before = set(sessions.sessions)
    out = run_sync(tap)
    (new,) = [s for sid, s in sessions.sessions.items() if sid not in before]
    requested = {name for name, _ in new.streams[0].columns}
    assert dropped not in requested
    assert requested == {v.name for v in table.variables} - {dropped}
    assert all(dropped not in r for r in out.records[stream_name(table)])
    assert set(out.records) == {stream_name(table)}


def test_unreleased_streams_with_other_column_layouts_are_reconciled(sandbox: Sandbox) -> None:
    model = sandbox.redivis
    ds = next(d for d in model.datasets_by_owner["jdoe"] if d.next_version is not None)
    version = ds.next_version
    table = next(t for t in ds.tables_in(version) if len(t.variables) > 2)
    table.num_rows = 5_000
    reference = table.qualified_reference_in(version)
    tap = make_tap(config(sandbox, [reference], read_streams=4))
    records = run_sync(tap).records[f"redivis_rows__{slug(table.name)}"]
    names = {v.name for v in table.variables} | {"_row_number"}
    assert all(set(r) == names for r in records)
    key = table.variables[0].name
    got = rows_by_id(records, key)
    expected = expected_rows(sandbox, table)
    assert set(got) == set(expected)
    last = table.variables[-1].name
    for row_id, row in got.items():
        # Every column present in a stream carries the right value; one the stream
        # lacked arrives as null.
        assert {k: v for k, v in row.items() if k != last} == {
            k: v for k, v in expected[row_id].items() if k != last
        }
        assert row[last] in (None, expected[row_id][last])


def test_a_missing_table_is_skipped_and_reported(sandbox: Sandbox) -> None:
    table = find_table(sandbox, rows=5_000, skip=2)
    missing = "demo.no_such_dataset.no_such_table"
    tap = make_tap(config(sandbox, [missing, table.qualified_reference]))
    out = run_sync(tap, finish=False)
    assert len(out.records[stream_name(table)]) == table.num_rows
    (failure,) = tap.runtime.failures
    assert missing in failure.partition
    assert "404" in failure.message


def test_conversions_follow_the_variable_types() -> None:
    as_text = pa.array(["1.5", None, "-2"])
    assert to_json_ready(as_text, "float").to_pylist() == [1.5, None, -2.0]
    stamps = pa.array([dt.datetime(2024, 5, 1, 10, 0, 0, 250000), None], pa.timestamp("us"))
    assert to_json_ready(stamps, "dateTime").to_pylist() == [
        "2024-05-01T10:00:00.250000+00:00",
        None,
    ]
    text_stamps = pa.array(["2024-05-01 10:00:00", "2024-05-01T10:00:00Z"])
    assert to_json_ready(text_stamps, "dateTime").to_pylist() == [
        "2024-05-01T10:00:00+00:00",
        "2024-05-01T10:00:00Z",
    ]
    times = pa.array([dt.time(3, 4, 5, 6)], pa.time64("us"))
    assert to_json_ready(times, "time").to_pylist() == ["03:04:05.000006"]
    dates = pa.array([dt.date(2020, 2, 29)], pa.date32())
    assert to_json_ready(dates, "date").to_pylist() == ["2020-02-29"]
    assert to_json_ready(pa.array([1, 0]), "boolean").to_pylist() == [True, False]


def test_streams_end_only_at_their_end_batch_and_clean_early_ends_resume(
    sandbox: Sandbox,
) -> None:
    """The default sandbox splits rows unevenly, announces even estimates, and ends the
    first read of some streams cleanly half way without the end batch: every row still
    arrives, once, because only the zero-row end batch finishes a stream."""
    table = find_table(sandbox, rows=9_001, skip=1)
    sessions = sandbox.platform("redivis").read_sessions
    assert sessions.early_ends  # the default mode
    reads_before = len(sessions.reads)
    tap = make_tap(config(sandbox, [table.qualified_reference], read_streams=3))
    out = run_sync(tap)
    key = table.variables[0].name
    assert rows_by_id(out.records[stream_name(table)], key) == expected_rows(sandbox, table)
    session = list(sessions.sessions.values())[-1]
    assert len({s.rows for s in session.streams}) > 1  # uneven
    assert any(s.rows > s.estimated for s in session.streams)  # over the estimate
    reads = sessions.reads[reads_before:]
    early = [s for s in session.streams if s.id in {i for i, off in reads if off}]
    assert early  # some stream ended early and was read again from its offset
    for stream in early:
        assert (stream.id, stream.rows // 2) in reads
    asked = [e for e in sandbox.request_log("redivis") if "/readStreams/" in e["path"]]
    assert asked
    assert all(e["query"].get("eosSentinel") == "true" for e in asked)


def test_rows_other_than_the_session_total_fail_the_table_naming_it(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = find_table(sandbox, rows=5_000, skip=1)
    sessions = sandbox.platform("redivis").read_sessions
    create = sessions.create

    def overcounted(*args: Any, **kwargs: Any) -> Any:
        session, unknown = create(*args, **kwargs)
        session.num_rows += 7  # the session counts rows no stream delivers
        return session, unknown

    monkeypatch.setattr(sessions, "create", overcounted)
    tap = make_tap(config(sandbox, [table.qualified_reference], read_streams=2))
    with pytest.raises(SyncFailedError) as info:
        run_sync(tap)
    message = str(info.value)
    assert table.qualified_reference in message
    assert "delivered 5000 rows, but the read session counted 5007" in message


def test_slugs() -> None:
    assert slug("World Development Indicators") == "world_development_indicators"
    assert slug("drugEra") == "drug_era"
    assert json.dumps(slug("%%", "table")) == '"table"'
