"""Redivis table rows: read sessions split into Arrow IPC read streams (notes, 5.4).

- ``POST /tables/{ref}/readSessions`` with ``format`` (``arrow`` only here),
  ``selectedVariables`` (names, case-insensitive), ``requestedStreamCount`` and optional
  ``maxResults`` answers ``{"id", "numRows", "streams": [{"id", "estimatedRows"}]}``; the
  server may grant fewer streams than requested (at most ``MAX_STREAMS``).
- ``GET /readStreams/{id}?offset=N[&eosSentinel=true]`` streams that stream's rows from
  ``N`` as an Arrow IPC stream (schema, then record batches), chunked; with
  ``eosSentinel=true`` the last batch is an empty one, the end-of-stream marker the official
  clients ask for (notes, 5.4).
- ``GET /tables/{ref}/rows?format=arrow[&selectedVariables=a,b][&maxResults=N]`` serves the
  whole table in one Arrow IPC body, without the end marker and not resumable: the official
  Python client reads tables under 1e8 bytes (``numBytes``) this way by default.

Completeness is only what the server says: streams split the table unevenly and their
``estimatedRows`` (an even share) differ from what they hold; ``numRows`` is the total.
By default (``early_ends``) the first read of about half the streams ends cleanly at a
batch boundary half way, without the end marker, as a cut-off download can: only a client
that asked for the marker and resumes at ``offset`` reads every row.

Quirks modelled from the notes' pitfalls: Arrow types that differ from the variables' types
on some dataset tables (floats and times as strings); the streams of an unreleased ``next``
version disagree on column order and presence; a few rows more than ``maxResults`` on the
last stream; sessions expire (6 hours by default), after which their streams are 404; only
the session's creator may read its streams. Rows are a pure function of (seed, table, row
index), computed column-wise with Arrow so that a million-row table costs little.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .framework import CutConnection

if TYPE_CHECKING:
    import pyarrow as pa

    from .redivis import Table, Version

MAX_STREAMS = 8
BATCH_ROWS = 8192
SESSION_TTL_SECONDS = 6 * 3600
OVER_DELIVERY_ROWS = 3
_NULL_EVERY = 17  # nullable cells: every 17th row (shifted per column) is null
_EPOCH_DAYS_SPAN = 20_000
_DAY_MICROS = 86_400_000_000


def _mix(*parts: object) -> int:
    return int(hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:8], 16)


def arrow_type(variable_type: str) -> pa.DataType:
    import pyarrow as pa

    return {
        "integer": pa.int64(),
        "float": pa.float64(),
        "boolean": pa.bool_(),
        "date": pa.date32(),
        "dateTime": pa.timestamp("us"),
        "time": pa.time64("us"),
    }.get(variable_type, pa.string())


def column_values(
    seed: int, table_key: str, name: str, vtype: str, start: int, stop: int
) -> pa.Array:
    """The values of one column for rows ``start`` to ``stop``, typed as the variable says."""
    import pyarrow as pa
    import pyarrow.compute as pc

    salt = _mix(seed, table_key, name.lower())
    index = pa.array(range(start, stop), pa.int64())
    raw = pc.bit_wise_and(pc.add(pc.multiply(index, 2_654_435_761), salt), 0xFFFFFFFF)
    if vtype == "integer":
        if name.lower().endswith("_id"):
            values: pa.Array = pc.add(index, 1)  # identifiers count rows, never null
            return values
        values = pc.subtract(raw, 2**31)
    elif vtype == "float":
        values = pc.divide(pc.subtract(raw, 2**31).cast(pa.float64()), 1000.0)
    elif vtype == "boolean":
        values = pc.equal(pc.bit_wise_and(raw, 1), 0)
    elif vtype == "date":
        values = pc.bit_wise_and(raw, 0x3FFF).cast(pa.int32()).cast(pa.date32())
    elif vtype == "dateTime":
        values = pc.multiply(raw, 977_777).cast(pa.timestamp("us"))
    elif vtype == "time":
        micros = pc.multiply(pc.bit_wise_and(raw, 0xFFFF), 1_318_359)
        values = pc.bit_wise_and(micros, 0x7FFFFFFFFFF).cast(pa.int64())
        values = pc.if_else(pc.less(values, _DAY_MICROS), values, 0).cast(pa.time64("us"))
    elif vtype == "geography":
        lon = pc.subtract(pc.bit_wise_and(raw, 0xFF), 128).cast(pa.string())
        lat = pc.subtract(pc.bit_wise_and(pc.shift_right(raw, 8), 0x7F), 64).cast(pa.string())
        values = pc.binary_join_element_wise("POINT(", lon, " ", lat, ")", "")
    else:
        values = pc.binary_join_element_wise(f"{name}_", raw.cast(pa.string()), "")
    nulls = pc.equal(pc.remainder(pc.add(index, salt % _NULL_EVERY), _NULL_EVERY), 0)
    return pc.if_else(nulls, pa.scalar(None, values.type), values)


@dataclass
class ReadStream:
    id: str
    session_id: str
    index: int
    start: int  # first table row of this stream
    rows: int  # rows this stream delivers (over-delivery included)
    columns: list[tuple[str, str]]  # (name, variable type) in the order this stream sends
    estimated: int = 0  # what the session announces: an even share, not ``rows``
    read_once: bool = False  # its first read has been served


@dataclass
class ReadSession:
    id: str
    owner: str
    table_key: str
    created: float
    num_rows: int
    streams: list[ReadStream] = field(default_factory=list)


class ReadSessions:
    """Sessions and streams of one sandbox, with the faults tests can switch on."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.ttl_seconds: float = SESSION_TTL_SECONDS
        self.sessions: dict[str, ReadSession] = {}
        self.streams: dict[str, ReadStream] = {}
        self._counter = 0
        self._lock = threading.Lock()
        # Faults: drop the connection after this many rows, for the next ``count`` reads;
        # optionally every session expires at that moment too.
        self._cuts: list[tuple[int, bool]] = []
        self.reads: list[tuple[str, int]] = []  # (stream id, offset) of every GET
        # The default mode: first reads of some streams end early, cleanly, unmarked.
        self.early_ends = True

    def cut_next_reads(self, after_rows: int, count: int = 1, *, expire: bool = False) -> None:
        with self._lock:
            self._cuts.extend([(after_rows, expire)] * count)

    def expire_all(self) -> None:
        with self._lock:
            for session in self.sessions.values():
                session.created = float("-inf")

    def create(
        self,
        table: Table,
        version: Version,
        owner: str,
        *,
        selected: list[str] | None,
        requested: int,
        max_results: int | None,
        now: float,
    ) -> tuple[ReadSession, list[str]]:
        """A new session; returns it and the unknown selected names (if any)."""
        by_name = {v.name.lower(): v for v in table.variables}
        unknown = [n for n in selected or [] if n.lower() not in by_name]
        variables = [by_name[n.lower()] for n in selected] if selected else list(table.variables)
        columns = [(v.name, v.type) for v in variables]
        table_key = f"{table.dataset.id}/{table.reference_id}"
        total = table.num_rows if max_results is None else min(table.num_rows, max_results)
        count = max(1, min(requested, MAX_STREAMS, max(total, 1)))
        with self._lock:
            self._counter += 1
            session = ReadSession(
                id=f"rsess_{_mix(self.seed, self._counter):08x}{self._counter}",
                owner=owner,
                table_key=table_key,
                created=now,
                num_rows=total,
            )
            # Uneven shares (weights 1, 2, 3, 1, 2, ...), the rest to the last stream.
            weights = [1 + index % 3 for index in range(count)]
            shares = [total * w // sum(weights) for w in weights]
            shares[-1] += total - sum(shares)
            start = 0
            for index in range(count):
                rows = shares[index]
                if max_results is not None and index == count - 1 and total < table.num_rows:
                    # The backend can deliver a few rows more than maxResults (notes, pitfall 5).
                    rows += min(OVER_DELIVERY_ROWS, table.num_rows - total)
                stream_columns = list(columns)
                if not version.is_released and index % 2 == 1 and len(columns) > 2:
                    # Unreleased tables: an upload's stream orders (and lacks) columns its own way.
                    stream_columns = list(reversed(columns[:-1]))
                stream = ReadStream(
                    id=f"{session.id}_s{index}",
                    session_id=session.id,
                    index=index,
                    start=start,
                    rows=rows,
                    columns=stream_columns,
                )
                start += shares[index]
                session.streams.append(stream)
                self.streams[stream.id] = stream
            estimate = -(-total // count)  # an even share, rounded up
            for stream in session.streams:
                stream.estimated = estimate
            self.sessions[session.id] = session
        return session, unknown

    def lookup(self, stream_id: str, owner: str, now: float) -> ReadStream | None:
        with self._lock:
            stream = self.streams.get(stream_id)
            if stream is None:
                return None
            session = self.sessions[stream.session_id]
            if session.owner != owner or now - session.created > self.ttl_seconds:
                return None
            return stream

    def body(
        self, stream: ReadStream, offset: int, strings_for: set[str], *, sentinel: bool = False
    ) -> ArrowBody:
        """The stream's rows from ``offset`` as an Arrow IPC stream, a batch at a time."""
        with self._lock:
            cut_after, expire = self._cuts.pop(0) if self._cuts else (None, False)
            self.reads.append((stream.id, offset))
            first = not stream.read_once
            stream.read_once = True
        body = ArrowBody(self, stream, offset, strings_for, sentinel, cut_after, expire)
        # every other stream of a session (which half depends on the session)
        alternate = (stream.index + _mix(self.seed, stream.session_id)) % 2 == 0
        if self.early_ends and first and offset == 0 and alternate:
            body.end_early = True
        return body

    def whole_body(self, stream: ReadStream, strings_for: set[str]) -> ArrowBody:
        """A one-request body of a whole single-stream session (the rows listing): no
        end-of-stream batch, no early end."""
        return ArrowBody(self, stream, 0, strings_for, False, None, False)

    def _batch(
        self, table_key: str, stream: ReadStream, schema: pa.Schema, start: int, stop: int
    ) -> pa.RecordBatch:
        import pyarrow as pa

        arrays = []
        for (name, vtype), arrow_field in zip(stream.columns, schema, strict=True):
            values = column_values(self.seed, table_key, name, vtype, start, stop)
            if arrow_field.type != values.type:
                values = values.cast(arrow_field.type)
            arrays.append(values)
        return pa.RecordBatch.from_arrays(arrays, schema=schema)

    def rows(self, table: Table, start: int = 0, stop: int | None = None) -> list[dict[str, Any]]:
        """The table's rows as Python values, for tests (all variables, table order)."""
        import pyarrow as pa

        stop = table.num_rows if stop is None else stop
        table_key = f"{table.dataset.id}/{table.reference_id}"
        arrays = [
            column_values(self.seed, table_key, v.name, v.type, start, stop)
            for v in table.variables
        ]
        names = [v.name for v in table.variables]
        return pa.RecordBatch.from_arrays(arrays, names=names).to_pylist()


class ArrowBody:
    """One read stream's body; ``end_early`` (set before it is sent) ends it cleanly at a
    batch boundary half way through what is left, without the end-of-stream batch."""

    def __init__(
        self,
        sessions: ReadSessions,
        stream: ReadStream,
        offset: int,
        strings_for: set[str],
        sentinel: bool,
        cut_after: int | None,
        expire: bool,
    ) -> None:
        self.sessions = sessions
        self.stream = stream
        self.offset = offset
        self.strings_for = strings_for
        self.sentinel = sentinel
        self.cut_after = cut_after
        self.expire = expire
        self.end_early = False

    def __iter__(self) -> Iterator[bytes]:
        import pyarrow as pa

        stream, sessions = self.stream, self.sessions
        table_key = sessions.sessions[stream.session_id].table_key
        fields = [
            pa.field(name, pa.string() if vtype in self.strings_for else arrow_type(vtype))
            for name, vtype in stream.columns
        ]
        schema = pa.schema(fields)
        sink = _Chunks()
        writer = pa.ipc.new_stream(sink, schema)
        yield sink.take()
        sent = 0
        position = stream.start + self.offset
        stop = stream.start + stream.rows
        if self.end_early:
            stop = position + (stop - position) // 2
        cut_after = self.cut_after
        while position < stop:
            upto = min(position + BATCH_ROWS, stop)
            if cut_after is not None and sent + (upto - position) > cut_after:
                upto = position + max(cut_after - sent, 0)
                if upto > position:
                    writer.write_batch(sessions._batch(table_key, stream, schema, position, upto))
                    yield sink.take()
                if self.expire:
                    sessions.expire_all()
                raise CutConnection
            writer.write_batch(sessions._batch(table_key, stream, schema, position, upto))
            sent += upto - position
            position = upto
            yield sink.take()
        if self.sentinel and not self.end_early:
            empty = [pa.array([], type=f.type) for f in schema]
            writer.write_batch(pa.RecordBatch.from_arrays(empty, schema=schema))
        writer.close()
        yield sink.take()


class _Chunks:
    """A write-only file for pyarrow that hands over what was written since the last take."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        return len(chunk)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data
