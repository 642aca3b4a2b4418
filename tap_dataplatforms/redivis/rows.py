"""Table rows: one stream per configured table, read through a read session.

A read session splits the table into read streams; each is an Arrow IPC stream read
concurrently on the one read-ahead pool (``core.readahead``, inside the Redivis budget),
converted batch by batch, never the whole table at once. Columns are typed from the
table's variables, not from the Arrow schema, which can disagree (notes, pitfall 4).

A read is complete only when the platform says so: every request asks for the end-of-stream
marker (``eosSentinel=true``, as the official clients do), and a stream is finished only
when its zero-row end batch arrives. A body that breaks, or ends cleanly without that
batch, resumes at ``?offset=`` the rows already read from that stream (the core's
``read_resumed``, under the one retry policy); an expired session is recreated (its hook)
and reading resumes where it was. ``estimatedRows`` is never used to trim or
stop a stream; the session's ``numRows`` is the one total, and a table whose streams
delivered another number fails, named.
"""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

import requests

from tap_dataplatforms.core.errors import PartitionError
from tap_dataplatforms.core.jsonbody import BrokenBody
from tap_dataplatforms.core.readahead import IDLE_WAIT_SECONDS, Lane
from tap_dataplatforms.core.records import ConformedRecords
from tap_dataplatforms.redivis.client import RedivisStream, encode_reference
from tap_dataplatforms.redivis.schemas import rows_schema

if TYPE_CHECKING:
    import pyarrow as pa
    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context

BATCH_QUEUE_PER_WORKER = 2
# Rows converted to Python at a time: what sits in the queue is bounded by this.
SLICE_ROWS = 1024
MAX_SESSION_RENEWALS = 3


@dataclass
class _Layout:
    """A session's streams, renewed when the session expires."""

    generation: int
    num_rows: int
    stream_ids: list[str]
    estimated: list[int]


class TableRowsStream(ConformedRecords, RedivisStream):
    """Rows of one Redivis table (`redivis_rows__<table>`)."""

    primary_keys = ("_row_number",)
    path = "/tables/{table_reference}/readSessions"
    # Rows come from Arrow columns cast to their variables' JSON types (to_json_ready).
    RECORDS_FIT_SCHEMA = True
    state_partitioning_keys = []
    #: Batches are converted where they are read; this bounds the batches in flight.
    workers_cap: ClassVar[int] = 16

    def __init__(
        self, tap: Tap, *, name: str, table: dict[str, Any], variables: list[dict[str, Any]]
    ):
        self.table = table
        self.variables = sorted(variables, key=lambda v: v.get("index", 0))
        super().__init__(tap, name=name, schema=rows_schema(self.variables))
        self._layout_lock = threading.Lock()
        self._layout: _Layout | None = None

    @property
    def table_reference(self) -> str:
        return str(self.table["qualifiedReference"])

    def selected_variables(self) -> list[dict[str, Any]]:
        """The columns selected in the catalog: deselected ones are not even requested."""
        mask = self.mask
        return [v for v in self.variables if mask.get(("properties", v["name"]), True)]

    # -- session --------------------------------------------------------------------------

    def _open_session(self, selected: list[dict[str, Any]], generation: int) -> _Layout:
        url = f"{self.url_base}/tables/{encode_reference(self.table_reference)}/readSessions"
        body = {
            "format": "arrow",
            "selectedVariables": [v["name"] for v in selected],
            "requestedStreamCount": self.settings.read_streams,
        }
        payload = self.call("POST", url, json_body=body).json()
        streams = payload.get("streams") or []
        return _Layout(
            generation=generation,
            num_rows=int(payload.get("numRows") or 0),
            stream_ids=[str(s["id"]) for s in streams],
            estimated=[int(s.get("estimatedRows") or 0) for s in streams],
        )

    def _renew(self, selected: list[dict[str, Any]], seen_generation: int) -> _Layout:
        """A new session after expiry, once for all streams that noticed."""
        with self._layout_lock:
            layout = self._layout
            assert layout is not None
            if layout.generation != seen_generation:
                return layout  # another stream renewed it already
            if layout.generation >= MAX_SESSION_RENEWALS:
                raise PartitionError(
                    f"Redivis: read session of {self.table_reference} kept expiring"
                )
            self.logger.warning(
                "Read session of %s expired; opening a new one", self.table_reference
            )
            fresh = self._open_session(selected, layout.generation + 1)
            if fresh.estimated != layout.estimated or fresh.num_rows != layout.num_rows:
                raise PartitionError(
                    f"Redivis: the new read session of {self.table_reference} splits the table "
                    "differently from the expired one; rerun the sync to read it afresh"
                )
            self._layout = fresh
            return fresh

    # -- reading ------------------------------------------------------------------------

    def request_records(self, context: Context | None) -> Iterator[dict[str, Any]]:
        selected = self.selected_variables()
        with self._layout_lock:
            self._layout = self._open_session(selected, 0)
            layout = self._layout
        if self.progress is not None:
            self.progress.total = layout.num_rows
        count = len(layout.stream_ids)
        if count == 0 or layout.num_rows == 0:
            return
        workers = max(1, min(count, self.common.max_concurrency, self.workers_cap))
        batches: queue.Queue[Any] = queue.Queue(maxsize=workers * BATCH_QUEUE_PER_WORKER)
        stop = threading.Event()
        done = object()

        def work(index: int) -> None:
            try:
                for rows in self._read_stream(index, count, selected, stop):
                    batches.put(rows)
                batches.put(done)
            except BaseException as exc:  # handed to the consumer, which raises it
                batches.put(exc)

        emitted = 0
        finished = 0
        lane = Lane(workers)
        tasks: dict[Future[None], int] = {lane.start(work, index): index for index in range(count)}
        try:
            while finished < count:
                try:
                    item = batches.get(timeout=IDLE_WAIT_SECONDS)
                except queue.Empty:
                    taken = lane.take_back(tasks)
                    if taken is None:
                        continue
                    index = tasks.pop(taken)
                    # The pool is busy elsewhere and none of this table's streams runs:
                    # this one is read here instead of waited for.
                    for rows in self._read_stream(index, count, selected, stop):
                        emitted += len(rows)
                        yield from rows
                    finished += 1
                    continue
                if item is done:
                    finished += 1
                    continue
                if isinstance(item, BaseException):
                    raise item
                emitted += len(item)
                yield from item
        finally:
            stop.set()
            while not batches.empty():  # unblock producers waiting on a full queue
                batches.get_nowait()
            lane.close(wait=True)
        if emitted != layout.num_rows:
            raise PartitionError(
                f"Redivis: table {self.table_reference}: its read streams delivered {emitted} "
                f"rows, but the read session counted {layout.num_rows}; the table is incomplete "
                "or doubled, rerun the sync"
            )

    def _read_stream(
        self,
        index: int,
        count: int,
        selected: list[dict[str, Any]],
        stop: threading.Event,
    ) -> Iterator[list[dict[str, Any]]]:
        """One read stream's rows, batch by batch, until its zero-row end batch: a body
        that breaks (or ends without that batch) resumes at ``?offset=`` the rows already
        read (``read_resumed``), and an expired session is renewed first."""
        import pyarrow as pa

        opened_with: list[_Layout] = []

        def open_at(offset: int) -> requests.Response:
            with self._layout_lock:
                layout = self._layout
            assert layout is not None
            opened_with[:] = [layout]
            url = f"{self.url_base}/readStreams/{quote(layout.stream_ids[index], safe='')}"
            return self.stream_body(url, params={"offset": offset, "eosSentinel": "true"})

        def renewed(error: PartitionError) -> bool:
            if error.status != 404:  # a read stream of an expired session is gone
                return False
            self._renew(selected, opened_with[0].generation)
            return True

        def read(response: requests.Response, offset: int) -> Iterator[list[dict[str, Any]]]:
            try:
                yield from self._batches(response, offset, index, count, selected, stop)
            except BrokenBody:
                raise
            except (pa.ArrowException, OSError, ValueError, _urllib3_errors()) as exc:
                # What a cut Arrow body raises as it is read: read on from the offset.
                raise BrokenBody(f"{type(exc).__name__}: {exc}") from exc

        yield from self.read_resumed(
            open_at,
            read,
            what=f"Redivis: read stream {index} of {self.table_reference}",
            size=len,
            renewed=renewed,
        )

    def _batches(
        self,
        response: requests.Response,
        offset: int,
        index: int,
        count: int,
        selected: list[dict[str, Any]],
        stop: threading.Event,
    ) -> Iterator[list[dict[str, Any]]]:
        """The rows of one opened read stream from row ``offset``, numbered across the
        table; ended only by the zero-row end batch (or by the sync stopping)."""
        pa = _arrow()
        response.raw.decode_content = True
        for batch in pa.ipc.open_stream(response.raw):
            if batch.num_rows == 0:
                return  # the end-of-stream batch: this stream is whole
            for start in range(0, batch.num_rows, SLICE_ROWS):
                if stop.is_set():
                    return
                piece = batch.slice(start, SLICE_ROWS)
                numbered = self._convert(piece, selected)
                for position, row in enumerate(numbered, offset):
                    row["_row_number"] = position * count + index
                offset += piece.num_rows
                if numbered:
                    yield numbered
        raise BrokenBody("the body ended without the end-of-stream batch")

    def _convert(
        self, batch: pa.RecordBatch, selected: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Arrow columns to JSON values, typed by the variables, matched by name case-blind."""
        import pyarrow as pa

        by_name = {name.lower(): i for i, name in enumerate(batch.schema.names)}
        arrays = []
        for variable in selected:
            position = by_name.get(variable["name"].lower())
            if position is None:  # a stream of an unreleased table may lack a column
                arrays.append(pa.nulls(batch.num_rows))
                continue
            arrays.append(to_json_ready(batch.column(position), variable.get("type", "string")))
        names = [v["name"] for v in selected]
        return pa.RecordBatch.from_arrays(arrays, names=names).to_pylist()


def _urllib3_errors() -> type[Exception]:
    from urllib3.exceptions import HTTPError

    return HTTPError


@functools.cache
def _arrow() -> Any:
    """pyarrow, its buffers from the system allocator. Arrow's default (jemalloc) keeps
    what each reading thread freed in that thread's arena: with several read streams,
    about 20 MB more at the peak for the same batches (measured on 1M rows)."""
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())
    return pa


def to_json_ready(column: pa.Array, variable_type: str) -> pa.Array:
    """A column cast to what its variable says, with dates and times as RFC 3339 text."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if variable_type == "integer":
        return column if pa.types.is_int64(kind) else column.cast(pa.int64())
    if variable_type == "float":
        floats = column if pa.types.is_float64(kind) else column.cast(pa.float64())
        # NaN and infinities have no JSON form: null, as the SDK's conformance made them.
        if floats.null_count == len(floats):
            return floats
        return pc.if_else(pc.is_finite(floats), floats, pa.scalar(None, pa.float64()))
    if variable_type == "boolean":
        return column if pa.types.is_boolean(kind) else column.cast(pa.bool_())
    if variable_type == "dateTime":
        if pa.types.is_timestamp(kind):
            naive = column.cast(pa.timestamp(kind.unit)) if kind.tz else column
            text = pc.strftime(naive, format="%Y-%m-%dT%H:%M:%S")
        else:  # text such as "2024-05-01 10:00:00[.ffffff]"
            text = pc.replace_substring(column.cast(pa.string()), " ", "T", max_replacements=1)
        # dateTime carries no zone: the contract emits it as UTC, unshifted.
        zoned = pc.match_substring_regex(text, r"(Z|[+-]\d\d:?\d\d)$")
        return pc.if_else(zoned, text, pc.binary_join_element_wise(text, "+00:00", ""))
    if variable_type in ("date", "time"):
        return column.cast(pa.string())
    return column if pa.types.is_string(kind) else column.cast(pa.string())
