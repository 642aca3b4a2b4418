"""``target-dataplatforms-duckdb``: Singer messages on stdin into a DuckDB file.

A table per stream (named as the stream) in ``default_target_schema``, which ends each run
holding what the source has:

- **SCHEMA** creates the table, typed from the JSON schema (``integer`` BIGINT, ``number``
  DOUBLE, ``boolean``, ``string`` VARCHAR, ``date-time`` TIMESTAMPTZ, ``date`` DATE,
  objects and arrays JSON, several types VARCHAR). A later SCHEMA adds the columns it
  brings (older rows read null) and widens a column whose type changed (BIGINT to DOUBLE,
  anything else to VARCHAR); nothing is narrowed or dropped.
- **RECORD** of a stream with ``key_properties`` replaces the row with the same key (the
  last record of a key in a batch wins); a keyless stream's records are appended. Every
  row carries the metadata columns target-postgres writes: ``_sdc_extracted_at``,
  ``_sdc_received_at``, ``_sdc_batched_at``, ``_sdc_deleted_at``, ``_sdc_sequence``,
  ``_sdc_table_version`` (the RECORD's ``version``) and ``_sdc_sync_started_at``.
- **ACTIVATE_VERSION** ends a full copy: rows of older versions (or none) are deleted
  (``hard_delete: true``) or get ``_sdc_deleted_at`` (``false``, the default, as in
  target-postgres), so live rows are ``WHERE _sdc_deleted_at IS NULL``.
- **STATE** is written to stdout only once every record before it is committed: at once
  when nothing is buffered, else after the next flush (a full batch, a pending state
  older than ``max_state_age_seconds``, or the end of the input).

Records are buffered per stream and loaded in batches: written to a newline-delimited
JSON file and read by DuckDB's ``read_json`` into the table (tens of thousands of rows a
second), with explicit casts.

Settings (``--config``): ``filepath`` (the DuckDB file; its folder is created),
``default_target_schema`` (default ``main``), ``hard_delete`` (default false),
``activate_version`` (default true; false ignores ACTIVATE_VERSION), ``batch_size_rows``
(default 100000), ``max_state_age_seconds`` (default 30), ``temp_dir``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import duckdb

NAME = "target-dataplatforms-duckdb"
LOG = logging.getLogger(NAME)

BIGINT = "BIGINT"
DOUBLE = "DOUBLE"
BOOLEAN = "BOOLEAN"
VARCHAR = "VARCHAR"
JSON = "JSON"
DATE = "DATE"
TIMESTAMPTZ = "TIMESTAMP WITH TIME ZONE"  # as information_schema spells it

#: The metadata columns, as the Singer SDK's SQL targets (target-postgres) write them.
METADATA_COLUMNS: dict[str, str] = {
    "_sdc_extracted_at": TIMESTAMPTZ,
    "_sdc_received_at": TIMESTAMPTZ,
    "_sdc_batched_at": TIMESTAMPTZ,
    "_sdc_deleted_at": TIMESTAMPTZ,
    "_sdc_sequence": BIGINT,
    "_sdc_table_version": BIGINT,
    "_sdc_sync_started_at": BIGINT,
}
VERSION_COLUMN = "_sdc_table_version"
DELETED_COLUMN = "_sdc_deleted_at"

DEFAULTS: dict[str, Any] = {
    "default_target_schema": "main",
    "hard_delete": False,
    "activate_version": True,
    "batch_size_rows": 100_000,
    "max_state_age_seconds": 30.0,
}

ABOUT = {
    "name": NAME,
    "description": "Singer target for a DuckDB file that mirrors the source "
    "(upserts by key, ACTIVATE_VERSION, added and widened columns)",
    "capabilities": [
        "about",
        "activate-version",
        "hard-delete",
        "soft-delete",
        "schema-flattening",
    ],
    "settings": {
        "type": "object",
        "properties": {
            "filepath": {"type": "string", "description": "Path of the DuckDB file"},
            "default_target_schema": {"type": "string", "description": "Schema of the tables"},
            "hard_delete": {"type": "boolean", "description": "Delete older versions' rows"},
            "activate_version": {"type": "boolean", "description": "Honour ACTIVATE_VERSION"},
            "batch_size_rows": {"type": "integer", "description": "Rows buffered per flush"},
            "max_state_age_seconds": {
                "type": "number",
                "description": "Flush when a pending STATE is this old",
            },
            "temp_dir": {"type": "string", "description": "Where batch files are written"},
        },
        "required": ["filepath"],
    },
}


class TargetError(Exception):
    """The input or the config cannot be loaded; the message says why."""


# --------------------------------------------------------------------------- types


def _json_types(schema: Mapping[str, Any]) -> tuple[set[str], set[str | None]]:
    """The JSON types a property schema allows (without null), and the formats of its
    string alternatives."""
    types: set[str] = set()
    formats: set[str | None] = set()
    alternatives = [schema, *schema.get("anyOf", []), *schema.get("oneOf", [])]
    for alternative in alternatives:
        declared = alternative.get("type")
        if declared is None:
            continue
        listed = [declared] if isinstance(declared, str) else list(declared)
        types.update(t for t in listed if t != "null")
        if "string" in listed:
            formats.add(alternative.get("format"))
    return types, formats


def sql_type(schema: Mapping[str, Any]) -> str:
    """The DuckDB type of a column whose JSON schema is ``schema``."""
    types, formats = _json_types(schema)
    if not types:
        return JSON  # anything: kept as its JSON text
    if types == {"integer"}:
        return BIGINT
    if types <= {"integer", "number"}:
        return DOUBLE
    if types == {"boolean"}:
        return BOOLEAN
    if types == {"string"}:
        if formats == {"date-time"}:
            return TIMESTAMPTZ
        if formats == {"date"}:
            return DATE
        return VARCHAR
    if types <= {"object", "array"}:
        return JSON
    return VARCHAR


def widen(old: str, new: str) -> str:
    """The type that holds the values of both ``old`` and ``new``."""
    if old == new:
        return old
    if {old, new} == {BIGINT, DOUBLE}:
        return DOUBLE
    return VARCHAR


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# --------------------------------------------------------------------------- streams


@dataclass
class Stream:
    """One stream: its table, its columns as they are in the table, its buffer."""

    name: str
    table: str  # schema-qualified, quoted
    schema: dict[str, Any]
    key: list[str]
    columns: dict[str, str] = field(default_factory=dict)
    keyed_rows: dict[tuple[Any, ...], str] = field(default_factory=dict)
    rows: list[str] = field(default_factory=list)
    created: bool = False  # whether the table exists

    def buffered(self) -> int:
        return len(self.keyed_rows) + len(self.rows)

    def add(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(record, default=str, separators=(",", ":"))
        if self.key:
            values = tuple(record.get(k) for k in self.key)
            try:
                hash(values)
            except TypeError:
                values = (json.dumps(values, sort_keys=True, default=str),)
            self.keyed_rows.pop(values, None)  # the last record of a key wins
            self.keyed_rows[values] = line
        else:
            self.rows.append(line)

    def take(self) -> list[str]:
        lines = [*self.keyed_rows.values(), *self.rows]
        self.keyed_rows.clear()
        self.rows.clear()
        return lines


def _flag(value: Any) -> bool:
    """A boolean setting, also when it arrives as text (``"false"``)."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


class Loader:
    """Applies Singer messages to a DuckDB file; each STATE's value is written to
    ``state_out`` (a line of JSON) once the records before it are committed."""

    def __init__(self, config: Mapping[str, Any], state_out: IO[str]) -> None:
        self.config = {**DEFAULTS, **config}
        filepath = self.config.get("filepath") or self.config.get("path")
        if not filepath:
            raise TargetError("setting `filepath` (the DuckDB file) is required")
        path = Path(str(filepath)).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.con = duckdb.connect(str(path))
        self.db_schema = str(self.config["default_target_schema"])
        self.con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(self.db_schema)}")
        self.hard_delete = _flag(self.config["hard_delete"])
        self.honour_versions = _flag(self.config["activate_version"])
        self.batch_size = int(self.config["batch_size_rows"])
        self.max_state_age = float(self.config["max_state_age_seconds"])
        self.tmp = Path(
            tempfile.mkdtemp(prefix="dataplatforms-warehouse-", dir=self.config.get("temp_dir"))
        )
        self.state_out = state_out
        self.streams: dict[str, Stream] = {}
        self.pending_state: Any = None
        self.pending_since: float | None = None
        self.sync_started_at = round(time.time() * 1000)
        self.batch_number = 0
        self.loaded: dict[str, int] = {}
        self.received = 0  # records received since the last flush of every stream

    # -- messages ----------------------------------------------------------------------

    def process_lines(self, lines: Iterable[str]) -> None:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                message = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TargetError(f"line {number} is not JSON: {exc}: {line[:200]!r}") from exc
            self.process(message)
        self.finish()

    def process(self, message: Mapping[str, Any]) -> None:
        kind = message.get("type")
        if kind == "RECORD":
            self.record(message)
        elif kind == "SCHEMA":
            self.schema(message)
        elif kind == "STATE":
            self.state(message.get("value"))
        elif kind == "ACTIVATE_VERSION":
            self.activate_version(str(message["stream"]), int(message["version"]))
        else:
            LOG.warning("message type %s ignored", kind)
        if self.received >= self.batch_size or (
            self.pending_since is not None
            and time.monotonic() - self.pending_since >= self.max_state_age
        ):
            self.flush_all()

    def schema(self, message: Mapping[str, Any]) -> None:
        name = str(message["stream"])
        schema = dict(message.get("schema") or {})
        key = list(message.get("key_properties") or [])
        stream = self.streams.get(name)
        if stream is not None and stream.schema == schema and stream.key == key:
            return
        if stream is not None:
            self.flush(stream)
        table = f"{quote(self.db_schema)}.{quote(name)}"
        new = Stream(name, table, schema, key)
        self._prepare_table(new)
        missing = [k for k in key if k not in new.columns]
        if missing:
            raise TargetError(f"{name}: key properties {missing} are not in its schema")
        self.streams[name] = new

    def record(self, message: Mapping[str, Any]) -> None:
        name = str(message["stream"])
        stream = self.streams.get(name)
        if stream is None:
            raise TargetError(f"RECORD of stream {name} before its SCHEMA")
        record = dict(message["record"])
        now = _now()
        record["_sdc_extracted_at"] = message.get("time_extracted")
        record["_sdc_received_at"] = now
        record["_sdc_batched_at"] = None  # set when loaded
        record["_sdc_deleted_at"] = record.get("_sdc_deleted_at")
        record["_sdc_sequence"] = time.time_ns() // 1000
        record["_sdc_table_version"] = message.get("version")
        record["_sdc_sync_started_at"] = self.sync_started_at
        stream.add(record)
        self.received += 1

    def state(self, value: Any) -> None:
        self.pending_state = value
        if self.buffered() == 0:
            self.emit_state()
        elif self.pending_since is None:
            self.pending_since = time.monotonic()

    def activate_version(self, name: str, version: int) -> None:
        stream = self.streams.get(name)
        if not self.honour_versions:
            LOG.info("%s: ACTIVATE_VERSION %s ignored (activate_version: false)", name, version)
            return
        if stream is None:
            LOG.warning("%s: ACTIVATE_VERSION before its SCHEMA, ignored", name)
            return
        self.flush(stream)
        if not stream.created:
            return  # nothing loaded yet, nothing older to remove
        older = f"({quote(VERSION_COLUMN)} < ? OR {quote(VERSION_COLUMN)} IS NULL)"
        if self.hard_delete:
            sql = f"DELETE FROM {stream.table} WHERE {older}"
            params: list[Any] = [version]
        else:
            sql = (
                f"UPDATE {stream.table} SET {quote(DELETED_COLUMN)} = now() "
                f"WHERE {older} AND {quote(DELETED_COLUMN)} IS NULL"
            )
            params = [version]
        row = self.con.execute(sql, params).fetchone()
        count = row[0] if row else 0
        how = "deleted" if self.hard_delete else "soft-deleted"
        LOG.info(
            "%s: version %s activated, %s rows of older versions %s", name, version, count, how
        )

    def finish(self) -> None:
        self.flush_all()
        if self.pending_state is not None:
            self.emit_state()
        self.con.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        for name, rows in sorted(self.loaded.items()):
            LOG.info("%s: %s rows loaded", name, rows)

    # -- loading -----------------------------------------------------------------------

    def buffered(self) -> int:
        return sum(stream.buffered() for stream in self.streams.values())

    def flush_all(self) -> None:
        for stream in self.streams.values():
            self.flush(stream)
        self.received = 0
        if self.pending_state is not None:
            self.emit_state()

    def emit_state(self) -> None:
        self.state_out.write(json.dumps(self.pending_state) + "\n")
        self.state_out.flush()
        self.pending_state = None
        self.pending_since = None

    def flush(self, stream: Stream) -> None:
        lines = stream.take()
        if not lines:
            return
        self.batch_number += 1
        path = self.tmp / f"batch-{self.batch_number}.ndjson"
        path.write_text("\n".join(lines) + "\n")
        try:
            self._load(stream, path, len(lines))
        finally:
            path.unlink(missing_ok=True)
        self.loaded[stream.name] = self.loaded.get(stream.name, 0) + len(lines)

    def _load(self, stream: Stream, path: Path, count: int) -> None:
        columns = stream.columns
        read_as = ", ".join(
            f"{literal(name)}: {literal(JSON if sql == JSON else VARCHAR)}"
            for name, sql in columns.items()
        )
        source = (
            f"read_json({literal(str(path))}, format='newline_delimited', "
            f"columns={{{read_as}}}, maximum_object_size=268435456)"
        )
        select = ", ".join(self._cast(name, sql) for name, sql in columns.items())
        con = self.con
        con.execute("BEGIN TRANSACTION")
        try:
            if not stream.created:
                definition = ", ".join(f"{quote(c)} {t}" for c, t in columns.items())
                con.execute(f"CREATE TABLE IF NOT EXISTS {stream.table} ({definition})")
            if stream.key:
                con.execute(f"CREATE OR REPLACE TEMP TABLE _batch AS SELECT {select} FROM {source}")
                same_key = " AND ".join(
                    f"{stream.table}.{quote(k)} IS NOT DISTINCT FROM _batch.{quote(k)}"
                    for k in stream.key
                )
                con.execute(f"DELETE FROM {stream.table} USING _batch WHERE {same_key}")
                con.execute(f"INSERT INTO {stream.table} BY NAME SELECT * FROM _batch")
                con.execute("DROP TABLE _batch")
            else:
                con.execute(f"INSERT INTO {stream.table} BY NAME SELECT {select} FROM {source}")
            con.execute("COMMIT")
            stream.created = True
        except duckdb.Error as exc:
            con.execute("ROLLBACK")
            raise TargetError(f"{stream.name}: loading {count} rows failed: {exc}") from exc

    @staticmethod
    def _cast(name: str, sql: str) -> str:
        column = quote(name)
        if name == "_sdc_batched_at":
            return f"now() AS {column}"
        if sql in (VARCHAR, JSON):
            return column
        return f"CAST(NULLIF({column}, '') AS {sql}) AS {column}"

    # -- tables ------------------------------------------------------------------------

    def _table_exists(self, name: str) -> bool:
        row = self.con.execute(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = ? AND table_name = ?",
            [self.db_schema, name],
        ).fetchone()
        return bool(row and row[0])

    def _existing_columns(self, name: str) -> dict[str, str]:
        rows = self.con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            [self.db_schema, name],
        ).fetchall()
        return {str(column): str(kind) for column, kind in rows}

    def _prepare_table(self, stream: Stream) -> None:
        """Create the table, or add and widen its columns; ``stream.columns`` then says
        what the table has."""
        properties = stream.schema.get("properties") or {}
        wanted = {str(name): sql_type(prop or {}) for name, prop in properties.items()}
        wanted.update(METADATA_COLUMNS)
        existing = self._existing_columns(stream.name)
        if not existing:  # created with its first rows: a stream without any has none
            stream.columns = dict(wanted)
            return
        stream.created = True
        for column, kind in wanted.items():
            have = existing.get(column)
            if have is None:
                self.con.execute(f"ALTER TABLE {stream.table} ADD COLUMN {quote(column)} {kind}")
                LOG.info("%s: column %s %s added", stream.name, column, kind)
                existing[column] = kind
            elif widen(have, kind) != have:
                wider = widen(have, kind)
                self.con.execute(
                    f"ALTER TABLE {stream.table} ALTER COLUMN {quote(column)} SET DATA TYPE {wider}"
                )
                LOG.info("%s: column %s widened from %s to %s", stream.name, column, have, wider)
                existing[column] = wider
        stream.columns = existing


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=NAME, description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--config", type=Path, help="JSON settings file")
    parser.add_argument("--input", type=Path, help="read messages from this file, not stdin")
    parser.add_argument("--about", action="store_true", help="print what the target does, as JSON")
    parser.add_argument("--format", default="json", help="--about format (json only)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(levelname)s %(message)s",  # Meltano adds the time and the plugin
    )
    if args.about:
        print(json.dumps(ABOUT, indent=2))
        return 0
    try:
        config = json.loads(args.config.read_text()) if args.config else {}
        loader = Loader(config, sys.stdout)
        if args.input:
            with args.input.open() as source:
                loader.process_lines(source)
        else:
            loader.process_lines(sys.stdin)
    except TargetError as exc:
        LOG.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
