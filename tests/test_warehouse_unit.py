"""The demo's warehouse target (``warehouse/``, ``target-dataplatforms-duckdb``) fed Singer
messages: upserts by key, appends keyless streams, honours ACTIVATE_VERSION (hard and
soft delete), adds and widens columns, keeps nested values as JSON, and writes a STATE
only once the records before it are committed.

The point of the target: target-duckdb 0.8.0 (the registry's, the demo's loader before)
ignores ACTIVATE_VERSION, so the rows the source deleted stayed in the demo's warehouse
(``test_rows_of_older_versions_are_deleted``, ``..._soft_deleted`` fail on it).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import duckdb
import pytest

from dataplatforms_warehouse import Loader, sql_type, widen
from dataplatforms_warehouse.target import TargetError

SCHEMA = "warehouse"
ITEMS = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": ["string", "null"]},
        "price": {"type": ["integer", "null"]},
        "seen_at": {"type": ["string", "null"], "format": "date-time"},
    },
}


def schema(stream: str, properties: Mapping[str, Any], key: Iterable[str] = ("id",)) -> dict:
    return {
        "type": "SCHEMA",
        "stream": stream,
        "schema": {"type": "object", "properties": dict(properties)},
        "key_properties": list(key),
    }


def record(stream: str, row: Mapping[str, Any], version: int | None = None) -> dict:
    message: dict[str, Any] = {"type": "RECORD", "stream": stream, "record": dict(row)}
    if version is not None:
        message["version"] = version
    return message


def activate(stream: str, version: int) -> dict:
    return {"type": "ACTIVATE_VERSION", "stream": stream, "version": version}


def state(value: Any) -> dict:
    return {"type": "STATE", "value": value}


def load(path: Path, messages: Iterable[Mapping[str, Any]], **config: Any) -> list[Any]:
    """Run the target over ``messages``; return the states it wrote."""
    out = io.StringIO()
    loader = Loader({"filepath": str(path), "default_target_schema": SCHEMA, **config}, out)
    loader.process_lines(json.dumps(m) for m in messages)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def live(path: Path, table: str, columns: str = "id, name") -> list[tuple[Any, ...]]:
    return query(
        path,
        f'SELECT {columns} FROM {SCHEMA}."{table}" WHERE _sdc_deleted_at IS NULL ORDER BY ALL',
    )


def columns(path: Path, table: str) -> dict[str, str]:
    rows = query(
        path,
        "SELECT column_name, data_type FROM information_schema.columns "
        f"WHERE table_schema = '{SCHEMA}' AND table_name = '{table}'",
    )
    return dict(rows)


def full_copy(stream: str, version: int, rows: Iterable[Mapping[str, Any]], key=("id",)) -> list:
    return [
        schema(stream, ITEMS["properties"], key),
        *(record(stream, row, version) for row in rows),
        activate(stream, version),
    ]


ABC = [{"id": i, "name": n} for i, n in enumerate("abc", 1)]


def test_keyed_records_are_upserted_not_doubled(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    for run in (1, 2):
        rows = [{"id": 1, "name": f"a{run}"}, {"id": 2, "name": "b"}, {"id": 1, "name": f"A{run}"}]
        load(db, [schema("items", ITEMS["properties"]), *(record("items", r) for r in rows)])
    assert live(db, "items") == [(1, "A2"), (2, "b")]


def test_keyless_records_are_appended(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    for _ in (1, 2):
        load(db, [schema("log", ITEMS["properties"], key=()), *(record("log", r) for r in ABC)])
    assert len(live(db, "log")) == 6


@pytest.mark.parametrize("key", [("id",), ()], ids=["keyed", "keyless"])
def test_rows_of_older_versions_are_deleted(tmp_path: Path, key: tuple[str, ...]) -> None:
    """The mirror: a full copy without row 3 leaves no row 3, and a keyless table is
    replaced, not appended to (target-duckdb 0.8.0 kept 3 rows, or 5 keyless)."""
    db = tmp_path / "w.duckdb"
    load(db, full_copy("items", 100, ABC, key), hard_delete=True)
    assert live(db, "items") == [(1, "a"), (2, "b"), (3, "c")]
    load(db, full_copy("items", 200, ABC[:2], key), hard_delete=True)
    assert live(db, "items") == [(1, "a"), (2, "b")]
    assert query(db, f"SELECT count(*) FROM {SCHEMA}.items") == [(2,)]
    assert query(db, f"SELECT DISTINCT _sdc_table_version FROM {SCHEMA}.items") == [(200,)]


@pytest.mark.parametrize("key", [("id",), ()], ids=["keyed", "keyless"])
def test_rows_of_older_versions_are_soft_deleted(tmp_path: Path, key: tuple[str, ...]) -> None:
    db = tmp_path / "w.duckdb"
    load(db, full_copy("items", 100, ABC, key))  # hard_delete false: the default
    load(db, full_copy("items", 200, ABC[:2], key))
    assert live(db, "items") == [(1, "a"), (2, "b")]
    deleted = query(
        db, f"SELECT id FROM {SCHEMA}.items WHERE _sdc_deleted_at IS NOT NULL ORDER BY id"
    )
    assert deleted == ([(3,)] if key else [(1,), (2,), (3,)])
    # A row that comes back in a later version is live again (keyed: the same row).
    load(db, full_copy("items", 300, ABC, key))
    assert live(db, "items") == [(1, "a"), (2, "b"), (3, "c")]
    if key:
        assert query(db, f"SELECT count(*) FROM {SCHEMA}.items") == [(3,)]


def test_rows_loaded_without_a_version_count_as_older(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    load(db, [schema("items", ITEMS["properties"]), *(record("items", r) for r in ABC)])
    load(db, full_copy("items", 100, ABC[:1]), hard_delete=True)
    assert live(db, "items") == [(1, "a")]


def test_activate_version_false_ignores_versions(tmp_path: Path) -> None:
    """What target-duckdb 0.8.0 does: the rows of older versions stay."""
    db = tmp_path / "w.duckdb"
    load(db, full_copy("items", 100, ABC), activate_version=False)
    load(db, full_copy("items", 200, ABC[:1]), activate_version="false")  # text, as from env
    assert len(live(db, "items")) == 3


def test_version_of_an_empty_source_empties_the_table(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    load(db, full_copy("items", 100, ABC), hard_delete=True)
    load(db, full_copy("items", 200, []), hard_delete=True)
    assert live(db, "items") == []
    # A stream never loaded: ACTIVATE_VERSION before any row creates nothing, fails nothing.
    load(db, full_copy("other", 1, []))
    assert "other" not in {t for (t,) in query(db, "SELECT table_name FROM duckdb_tables()")}


def test_a_new_column_is_added_and_older_rows_read_null(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    load(db, full_copy("items", 100, ABC))
    wider = {**ITEMS["properties"], "discount": {"type": ["number", "null"]}}
    load(
        db,
        [
            schema("items", wider),
            record("items", {"id": 4, "name": "d", "discount": 0.5}, 200),
            record("items", {"id": 1, "name": "a"}, 200),
        ],
    )
    assert columns(db, "items")["discount"] == "DOUBLE"
    assert live(db, "items", "id, discount") == [(1, None), (2, None), (3, None), (4, 0.5)]


def test_a_column_that_changes_type_widens(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    load(db, [schema("items", ITEMS["properties"]), record("items", {"id": 1, "price": 3})])
    assert columns(db, "items")["price"] == "BIGINT"
    as_number = {**ITEMS["properties"], "price": {"type": ["number", "null"]}}
    load(db, [schema("items", as_number), record("items", {"id": 2, "price": 2.5})])
    assert columns(db, "items")["price"] == "DOUBLE"
    # An integer SCHEMA again does not narrow it; a string one makes it VARCHAR.
    load(db, [schema("items", ITEMS["properties"]), record("items", {"id": 3, "price": 7})])
    assert columns(db, "items")["price"] == "DOUBLE"
    as_text = {**ITEMS["properties"], "price": {"type": ["string", "null"]}}
    load(db, [schema("items", as_text), record("items", {"id": 4, "price": "n/a"})])
    assert columns(db, "items")["price"] == "VARCHAR"
    assert live(db, "items", "id, price") == [(1, "3.0"), (2, "2.5"), (3, "7.0"), (4, "n/a")]


def test_a_schema_change_within_one_run_flushes_the_rows_before_it(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    wider = {**ITEMS["properties"], "note": {"type": ["string", "null"]}}
    load(
        db,
        [
            schema("items", ITEMS["properties"]),
            record("items", {"id": 1, "name": "a", "note": "dropped: not in the schema"}),
            schema("items", wider),
            record("items", {"id": 2, "name": "b", "note": "kept"}),
        ],
    )
    assert live(db, "items", "id, note") == [(1, None), (2, "kept")]


def test_nested_values_are_json_and_types_follow_the_schema(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    properties = {
        "id": {"type": "string"},
        "tags": {"type": ["array", "null"], "items": {"type": "string"}},
        "owner": {"type": ["object", "null"], "properties": {"name": {"type": "string"}}},
        "anything": {},
        "mixed": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
        "ok": {"type": ["boolean", "null"]},
        "day": {"type": ["string", "null"], "format": "date"},
        "at": {"type": ["string", "null"], "format": "date-time"},
    }
    row = {
        "id": "x1",
        "tags": ["a", "b"],
        "owner": {"name": "Ann", "roles": [1]},
        "anything": "text",
        "mixed": 5,
        "ok": True,
        "day": "2024-02-29",
        "at": "2024-02-29T10:11:12.5Z",
    }
    load(db, [schema("things", properties), record("things", row), record("things", {"id": "x2"})])
    types = columns(db, "things")
    assert types["tags"] == types["owner"] == types["anything"] == "JSON"
    assert types["mixed"] == "VARCHAR"
    assert types["ok"] == "BOOLEAN"
    assert types["day"] == "DATE"
    assert types["at"] == "TIMESTAMP WITH TIME ZONE"
    got = query(
        db,
        "SELECT tags, owner->>'$.name', anything, mixed, ok, day::varchar, "
        f'epoch_ms("at") FROM {SCHEMA}.things ORDER BY id',
    )
    assert got[0][0] is not None
    assert json.loads(got[0][0]) == ["a", "b"]
    assert got[0][1:] == ("Ann", '"text"', "5", True, "2024-02-29", 1709201472500)
    assert got[1] == (None, None, None, None, None, None, None)


def test_metadata_columns_are_those_of_sql_targets(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    message = record("items", {"id": 1, "name": "a"}, 7)
    message["time_extracted"] = "2024-01-01T00:00:00+00:00"
    load(db, [schema("items", ITEMS["properties"]), message])
    names = set(columns(db, "items"))
    assert {
        "_sdc_extracted_at",
        "_sdc_received_at",
        "_sdc_batched_at",
        "_sdc_deleted_at",
        "_sdc_sequence",
        "_sdc_table_version",
        "_sdc_sync_started_at",
    } <= names
    row = query(
        db,
        "SELECT _sdc_table_version, epoch_ms(_sdc_extracted_at), _sdc_batched_at IS NOT NULL "
        f"FROM {SCHEMA}.items",
    )
    assert row == [(7, 1704067200000, True)]


class _StateProbe(io.StringIO):
    """A stdout that, on each STATE written, notes the rows the table holds."""

    loader: Loader

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[Any, int]] = []

    def write(self, text: str) -> int:
        try:
            row = self.loader.con.execute(f"SELECT count(*) FROM {SCHEMA}.items").fetchone()
        except duckdb.CatalogException:  # no table yet
            row = (0,)
        self.seen.append((json.loads(text), row[0] if row else -1))
        return super().write(text)


def test_state_is_written_only_after_the_records_before_it_are_committed(
    tmp_path: Path,
) -> None:
    probe = _StateProbe()
    loader = Loader(
        {
            "filepath": str(tmp_path / "w.duckdb"),
            "default_target_schema": SCHEMA,
            "batch_size_rows": 4,
        },
        probe,
    )
    probe.loader = loader
    messages = [
        schema("items", ITEMS["properties"]),
        state({"n": 0}),  # nothing buffered: written at once
        *(record("items", {"id": i}) for i in range(1, 4)),
        state({"n": 3}),  # three rows buffered: held until they are loaded
        record("items", {"id": 4}),  # the fourth fills the batch: flush, then the state
        record("items", {"id": 5}),
        state({"n": 5}),  # held to the end of the input
    ]
    for message in messages[:6]:
        loader.process(message)
    assert probe.seen == [({"n": 0}, 0)]
    loader.process(messages[6])
    assert probe.seen[1:] == [({"n": 3}, 4)]
    for message in messages[7:]:
        loader.process(message)
    assert len(probe.seen) == 2
    loader.finish()
    assert probe.seen[2:] == [({"n": 5}, 5)]


def test_sql_types_and_widening() -> None:
    assert sql_type({"type": ["null", "integer"]}) == "BIGINT"
    assert sql_type({"type": ["integer", "number"]}) == "DOUBLE"
    assert sql_type({"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]}) == (
        "TIMESTAMP WITH TIME ZONE"
    )
    assert sql_type({"type": ["string", "integer"]}) == "VARCHAR"
    assert widen("BIGINT", "DOUBLE") == widen("DOUBLE", "BIGINT") == "DOUBLE"
    assert widen("DATE", "TIMESTAMP WITH TIME ZONE") == "VARCHAR"
    assert widen("JSON", "JSON") == "JSON"


def test_a_record_before_its_schema_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="before its SCHEMA"):
        load(tmp_path / "w.duckdb", [record("items", {"id": 1})])


def test_the_executable_reads_stdin_and_writes_states(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "w.duckdb"
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"filepath": str(db), "default_target_schema": SCHEMA}))
    messages = [*full_copy("items", 1, ABC), state({"bookmarks": {"items": 1}})]
    result = subprocess.run(
        [sys.executable, "-m", "dataplatforms_warehouse.target", "--config", str(config)],
        input="".join(json.dumps(m) + "\n" for m in messages),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {"bookmarks": {"items": 1}}
    ]
    assert live(db, "items") == [(1, "a"), (2, "b"), (3, "c")]
    assert "version 1 activated" in result.stderr
