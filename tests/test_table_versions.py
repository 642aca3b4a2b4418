"""Table versions: full-table streams mirror the source, incremental ones stay incremental.

Every RECORD of a full-table stream carries the run's version and one ACTIVATE_VERSION per
stream follows all of its partitions (tables, datasets, runs, workspaces...). A small model
of a SQL target (upsert on the key, append without one; ACTIVATE_VERSION drops the rows of
older versions, as target-postgres does) applied to three syncs with the sandbox changing
in between holds exactly the sandbox's rows after each one, partitioned streams included.
The same three syncs into a real PostgreSQL through Meltano: tests/test_e2e_mirror.py.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import itertools
import json
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest

from dataplatforms_sandbox import CREDENTIALS, Sandbox
from tap_dataplatforms.core.http import PlatformStream
from tests.helpers import make_tap

ROOMY = {name: (1_000_000, 60.0) for name in ("redivis", "dexi", "reinfer", "datalinx")}
START = "2000-01-01T00:00:00Z"
ROWS = 40  # rows of the Redivis tables read, kept small


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    sandbox = Sandbox(seed=5, scale=1, limits=ROOMY).start()
    sandbox.datalinx.burst = (1_000_000, 1_000_000.0)
    sandbox.platform("dexi").set_write_limit(1_000_000)  # type: ignore[attr-defined]
    try:
        yield sandbox
    finally:
        sandbox.stop()


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PlatformStream, "retry_base_seconds", 0.001)
    from tap_dataplatforms.dexi import client as dexi_client

    monkeypatch.setattr(dexi_client, "WRITE_RATE_PER_SECOND", 5000.0)


def table_reference(table: Any) -> str:
    """A table in whatever version is current: the dataset without a version tag."""
    return f"{table.dataset.qualified_reference}.{table.scoped_reference}"


def config(sb: Sandbox, **extra: Any) -> dict[str, Any]:
    fast = {"max_requests_per_second": 5000}
    table = sb.changing_table()
    table.num_rows = min(table.num_rows, ROWS)
    return {
        "start_date": START,
        "redivis": {
            "api_url": sb.base_url("redivis"),
            **CREDENTIALS["redivis"],
            "organizations": ["demo"],
            "tables": [table_reference(table)],
            **fast,
        },
        "dexi": {
            "api_url": sb.base_url("dexi"),
            **CREDENTIALS["dexi"],
            "dataset_ids": list(sb.dexi.datasets),
            **fast,
        },
        "invision": {
            "api_url": sb.base_url("invision"),
            **CREDENTIALS["invision"],
            "tables": list(sb.invision.tables),
            **fast,
        },
        "reinfer": {"api_url": sb.base_url("reinfer"), **CREDENTIALS["reinfer"], **fast},
        **extra,
    }


def log_bookmark() -> dict[str, Any]:
    """A first sync's state: InVision's execution log is read a day per request, so from
    shortly before its data (the sandbox's last 40 days), not from START (some 9,000
    requests a sync); every other stream has no bookmark and is read from START."""
    since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=60)
    value = since.replace(microsecond=0).isoformat()
    log = {"replication_key": "timestamputc", "replication_key_value": value}
    return {"bookmarks": {"invision_execution_log": log}}


def sync(cfg: dict[str, Any], state: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    tap = make_tap(cfg, state=state)
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        tap.preflight()
        tap.sync_all()
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


#: Read for new executions only (children of the incremental executions stream), a record
#: per run the tap started, or a table with a `version` column (target-postgres cannot
#: soft-delete there): no table version.
NOT_MIRRORED = ("dexi_results__", "dexi_files", "invision_dataflow_runs", "dexi_runs")


def full_table(messages: list[dict[str, Any]], cfg: dict[str, Any]) -> set[str]:
    """Streams with records that re-read their whole source each sync."""
    tap = make_tap(cfg)
    seen = {m["stream"] for m in messages if m["type"] == "RECORD"}
    return {
        n
        for n in seen
        if tap.streams[n].replication_method == "FULL_TABLE" and not n.startswith(NOT_MIRRORED)
    }


class Target:
    """A SQL target as target-postgres behaves with ``hard_delete: true``: a row per key
    (upsert), rows appended without a key, ACTIVATE_VERSION deleting every row of an
    older version or none."""

    def __init__(self) -> None:
        self.keys: dict[str, list[str]] = {}
        # A table's rows by their key (a row without one gets a number of its own), in
        # the order they were written: an upsert is a dictionary lookup, not a scan.
        self.rows: dict[str, dict[str | int, tuple[int | None, str | None, dict[str, Any]]]] = (
            defaultdict(dict)
        )
        self.columns: dict[str, set[str]] = defaultdict(set)
        self._appended = itertools.count()

    def load(self, messages: list[dict[str, Any]]) -> None:
        for m in messages:
            stream = m.get("stream", "")
            if m["type"] == "SCHEMA":
                self.keys[stream] = m["key_properties"]
                self.columns[stream] |= set(m["schema"]["properties"])
            elif m["type"] == "RECORD":
                keys = self.keys[stream]
                record = m["record"]
                key = json.dumps([record.get(k) for k in keys]) if keys else None
                table = self.rows[stream]
                slot: str | int = key if key is not None else next(self._appended)
                table.pop(slot, None)  # the row of the same key goes; this one is appended
                table[slot] = (m.get("version"), key, record)
            elif m["type"] == "ACTIVATE_VERSION":
                v = m["version"]
                self.rows[stream] = {
                    slot: r
                    for slot, r in self.rows[stream].items()
                    if r[0] is not None and r[0] >= v
                }

    def records(self, stream: str) -> list[str]:
        return sorted(json.dumps(r[2], sort_keys=True) for r in self.rows.get(stream, {}).values())


def as_rows(messages: list[dict[str, Any]], stream: str) -> list[str]:
    return sorted(
        json.dumps(m["record"], sort_keys=True)
        for m in messages
        if m["type"] == "RECORD" and m["stream"] == stream
    )


def test_full_table_records_carry_one_version_activated_after_every_partition(
    sb: Sandbox,
) -> None:
    cfg = config(sb)
    messages = sync(cfg, log_bookmark())
    mirrored = full_table(messages, cfg)
    records = [m for m in messages if m["type"] == "RECORD"]
    versions = {m.get("version") for m in records if m["stream"] in mirrored}
    assert len(versions) == 1, versions
    (version,) = versions
    assert isinstance(version, int)
    # Read in several partitions: per dataset, per source, per table, per run.
    assert {
        "redivis_tables",
        "redivis_variables",
        "reinfer_streams",
        "reinfer_labellings",
    } <= mirrored
    assert any(n.startswith("invision_table__") for n in mirrored)
    assert any(n.startswith("dexi_dataset_rows__") for n in mirrored)
    assert any(n.startswith("redivis_rows__") for n in mirrored)
    # Incremental streams carry none.
    incremental = {m["stream"] for m in records} - mirrored
    assert {"reinfer_comments", "dexi_executions"} <= incremental
    assert all("version" not in m for m in records if m["stream"] in incremental)
    activations = [(i, m) for i, m in enumerate(messages) if m["type"] == "ACTIVATE_VERSION"]
    # One per mirrored stream, those without records (an empty source) too.
    activated = [m["stream"] for _, m in activations]
    assert len(activated) == len(set(activated))
    assert set(activated) >= mirrored
    assert not {n for n in activated if n.startswith(NOT_MIRRORED)}
    assert not set(activated) & incremental
    assert {m["version"] for _, m in activations} == {version}
    last_record = {m["stream"]: i for i, m in enumerate(messages) if m["type"] == "RECORD"}
    for at, message in activations:
        if message["stream"] in last_record:
            assert at > last_record[message["stream"]], message["stream"]


def test_three_syncs_with_changes_between_leave_the_target_equal_to_the_source(
    sb: Sandbox,
) -> None:
    cfg = config(sb)
    target = Target()
    state = log_bookmark()
    for generation in range(3):
        if generation:
            sb.change()
        messages = sync(cfg, state)
        states = [m["value"] for m in messages if m["type"] == "STATE"]
        state = states[-1] if states else state
        target.load(messages)
        # A full-table stream's table is what this sync read, nothing older...
        for stream in full_table(messages, cfg):
            assert target.records(stream) == as_rows(messages, stream), (generation, stream)
        # ...which is the sandbox's data.
        for dataset_id, rows in sb.dexi.datasets.items():
            stream = "dexi_dataset_rows__" + dataset_id.replace("-", "_")
            assert len(target.rows[stream]) == len(rows), (generation, stream)
        tables = sorted(
            len(target.rows[n]) for n in target.rows if n.startswith("invision_table__")
        )
        assert tables == sorted(len(r) for r in sb.invision.tables.values()), generation
        table = sb.changing_table()
        (rows_stream,) = [n for n in target.rows if n.startswith("redivis_rows__")]
        assert len(target.rows[rows_stream]) == table.num_rows, generation
        assert {v.name for v in table.variables} <= target.columns[rows_stream]
    # New columns arrived as columns of the stream's schema, old rows read null.
    gl = next(n for n in target.rows if n.startswith("invision_table__") and "gl" in n.lower())
    assert {"Currency", "Currency2"} <= target.columns[gl]


def reinfer_only(sb: Sandbox, **extra: Any) -> dict[str, Any]:
    block = {"api_url": sb.base_url("reinfer"), **CREDENTIALS["reinfer"]}
    return {"start_date": START, "reinfer": {**block, "max_requests_per_second": 5000}, **extra}


def versioned(messages: list[dict[str, Any]]) -> tuple[set[str], set[str]]:
    """(streams with a versioned record, streams activated)."""
    return (
        {m["stream"] for m in messages if m["type"] == "RECORD" and "version" in m},
        {m["stream"] for m in messages if m["type"] == "ACTIVATE_VERSION"},
    )


@pytest.mark.parametrize(
    ("extra", "on"),
    [
        ({}, True),
        ({"emit_activate_version_messages": False}, False),
        # Under `partition` a process holds a slice of each table: off unless asked for.
        ({"partition": {"index": 0, "count": 2}}, False),
        ({"partition": {"index": 0, "count": 2}, "emit_activate_version_messages": True}, True),
    ],
)
def test_the_standard_switch_and_the_partition_default(
    sb: Sandbox, extra: dict[str, Any], on: bool
) -> None:
    records, activated = versioned(sync(reinfer_only(sb, **extra)))
    full = {"reinfer_projects", "reinfer_datasets", "reinfer_sources", "reinfer_streams"}
    if on:
        assert full <= records
        assert full <= activated
    else:
        assert not records
        assert not activated
    assert "reinfer_comments" not in records | activated


def test_a_failed_stream_holds_back_its_own_version_only(sb: Sandbox) -> None:
    """A version activated after a partition failed would delete that partition's rows:
    the failed stream gets none, every complete stream (its platform's too) does."""
    sb.force("reinfer", status=500, count=1000, path_contains="/streams")
    cfg = reinfer_only(sb, max_retries=0)
    cfg["dexi"] = {
        "api_url": sb.base_url("dexi"),
        **CREDENTIALS["dexi"],
        "dataset_ids": list(sb.dexi.datasets),
        "max_requests_per_second": 5000,
    }
    messages = sync(cfg)
    records, activated = versioned(messages)
    assert "reinfer_streams" not in activated
    complete = {"reinfer_projects", "reinfer_datasets", "reinfer_sources", "reinfer_labellings"}
    assert complete <= activated
    assert {f"dexi_dataset_rows__{d.replace('-', '_')}" for d in sb.dexi.datasets} <= activated
    assert complete <= records


def test_a_platform_that_fails_its_check_holds_back_no_other_platform(sb: Sandbox) -> None:
    cfg = reinfer_only(sb)
    cfg["invision"] = {
        "api_url": sb.base_url("invision"),
        "api_key": "not-the-key",
        "tables": list(sb.invision.tables),
    }
    tap = make_tap(cfg)
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        tap.preflight()
        tap.sync_all()
    messages = [json.loads(line) for line in buffer.getvalue().splitlines()]
    # (InVision answers a wrong key with a 500: a failed check, not refused credentials.)
    (failure,) = tap.runtime.failures
    assert failure.streams
    assert all(name.startswith("invision_") for name in failure.streams)
    _, activated = versioned(messages)
    assert {"reinfer_projects", "reinfer_datasets", "reinfer_sources", "reinfer_streams"} <= (
        activated
    )
    assert not {n for n in activated if n.startswith("invision_")}


class _Stream:
    def __init__(self, name: str, *children: _Stream) -> None:
        self.name = name
        self.child_streams = list(children)


def test_a_failed_parent_holds_back_its_children_and_an_unnamed_failure_everything() -> None:
    from tap_dataplatforms.core import versions
    from tap_dataplatforms.core.runtime import Failure

    grandchild = _Stream("labelling_details")
    children = [_Stream("streams"), _Stream("labellings", grandchild)]
    parent, other = _Stream("datasets", *children), _Stream("projects")
    every = [parent, *children, grandchild, other]
    failed = [Failure("datasets [project=a]", "500", streams=("datasets",))]
    complete, held = versions.split_complete(every, failed, every)
    assert [s.name for s in complete] == ["projects"]
    assert {s.name for s in held} == {"datasets", "streams", "labellings", "labelling_details"}
    failed = [Failure("labellings [dataset=b]", "500", streams=("labellings",))]
    complete, held = versions.split_complete(every, failed, every)
    assert {s.name for s in held} == {"labellings", "labelling_details"}
    # A failure that names no stream (not known what it missed): nothing is activated.
    complete, held = versions.split_complete(every, [Failure("x", "y")], every)
    assert complete == []
    assert held == every
    assert versions.split_complete(every, [], every) == (every, [])


#: target-postgres (0.8.1) fails its soft delete in a table with a `version` column;
#: renamed on its way out, dexi_runs' robot version no longer stands in the way.
RENAME_VERSION = {"dexi_runs": {"robot_version": "version", "version": "__NULL__"}}


@pytest.mark.parametrize("maps", [None, RENAME_VERSION], ids=["as-is", "renamed"])
def test_dexi_runs_is_mirrored_once_its_version_field_is_renamed_by_a_stream_map(
    sb: Sandbox, maps: dict[str, Any] | None
) -> None:
    block = {"api_url": sb.base_url("dexi"), **CREDENTIALS["dexi"]}
    cfg: dict[str, Any] = {"dexi": {**block, "max_requests_per_second": 5000}}
    if maps:
        cfg["stream_maps"] = maps
    messages = sync(cfg)
    records, activated = versioned(messages)
    runs = [m["record"] for m in messages if m["type"] == "RECORD" and m["stream"] == "dexi_runs"]
    (schema,) = [m["schema"] for m in messages if m.get("stream") == "dexi_runs" and "schema" in m]
    assert len(runs) == len(sb.dexi.runs)
    if maps:
        assert "dexi_runs" in records & activated
        assert "version" not in schema["properties"]
        assert {r["robot_version"] for r in runs} == {r.version for r in sb.dexi.runs}
        assert all("version" not in r for r in runs)
    else:
        # The platform's field, as the contract names it: no table version then.
        assert "dexi_runs" not in records | activated
        assert {r["version"] for r in runs} == {r.version for r in sb.dexi.runs}
