"""Dexi streams: runs -> executions -> results of each run (and their files); dataset rows."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar, cast

import requests

from tap_dataplatforms.core.errors import PartitionError
from tap_dataplatforms.core.http import json_type, response_json
from tap_dataplatforms.core.jsonbody import ITEM, MEMBER, RUN, iter_body
from tap_dataplatforms.core.partition import in_partition
from tap_dataplatforms.core.readahead import read_ahead
from tap_dataplatforms.core.records import ConformedRecords, EncodedRecords, LeanRecordLoop
from tap_dataplatforms.core.redact import redact
from tap_dataplatforms.core.timestamps import to_rfc3339
from tap_dataplatforms.dexi import schemas
from tap_dataplatforms.dexi.client import (
    PAGE_SIZE,
    WRITES,
    DexiStream,
    encode_segment,
)
from tap_dataplatforms.dexi.columns import column_schema, conform
from tap_dataplatforms.dexi.executions import (
    AT_BOOKMARK,
    MAX_LIST_PASSES,
    OPEN_IDS,
    OPEN_SINCE,
    STOP_MARGIN_MS,
    RunStarter,
    ThrottledState,
    epoch_ms,
    is_open,
    next_watermark,
    settle_bookmark,
)
from tap_dataplatforms.dexi.files import download_file, file_cells, parse_file_cell
from tap_dataplatforms.dexi.prefetch import ResultPrefetch
from tap_dataplatforms.dexi.rowtext import RowEncoder

if TYPE_CHECKING:
    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context, Record

#: Bytes read at a time from a result body.
_CHUNK_BYTES = 1 << 18
#: Cell types that already fit a column kind (see columns.conform for the rest).
_FITS: dict[str | None, tuple[type, ...]] = {
    "string": (str,),
    None: (str,),
    "integer": (int,),
    "number": (float, int),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


class RunsStream(DexiStream):
    """Every run of the account, or the runs of ``dexi.run_ids``."""

    name = "dexi_runs"
    path = "runs"
    primary_keys = ("_id",)
    schema = schemas.RUNS

    #: Discovery lists every run, whatever ``partition`` says: a results stream's name
    #: depends on the names of the other runs (a shared slug gets a suffix).
    whole_account = False

    def owns(self, run_id: str) -> bool:
        return self.whole_account or in_partition(self.common.partition, run_id)

    @property
    def partitions(self) -> list[dict[str, Any]] | None:
        run_ids = self.settings.run_ids
        if not run_ids:
            return None
        # A configured run that was deleted answers 404: that partition fails, not the sync.
        return [{"run_id": run_id} for run_id in dict.fromkeys(run_ids) if self.owns(run_id)]

    def get_url(self, context: Context | None) -> str:
        if context and "run_id" in context:
            return self.url_base + "runs/" + encode_segment(str(context["run_id"]))
        return self.url_base + "runs"

    def get_url_params(self, context: Context | None, next_page_token: Any) -> dict[str, Any]:
        if context and "run_id" in context:
            return {}
        return super().get_url_params(context, next_page_token)

    def parse_response(self, response: requests.Response) -> Iterable[dict[str, Any]]:
        body = response_json(response)
        listing = (response.url or "").split("?")[0].rstrip("/").endswith("/runs")
        if isinstance(body, dict) and not listing:
            yield body  # GET runs/{id}: one bare run
            return
        yield from self.documented_list(response, "rows", body)

    def request_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        # Newest first: a run created while paging pushes one to the next page again.
        seen: set[str] = set()
        for run in super().request_records(context):
            run_id = str(run.get("_id"))
            if run_id in seen or not (context or self.owns(run_id)):
                continue
            seen.add(run_id)
            yield run

    def get_child_context(self, record: Record, context: Context | None) -> dict[str, Any]:
        return {"run_id": record["_id"]}


class ExecutionsStream(DexiStream):
    """Finished executions of each run, incremental on ``finished``.

    The list is newest first by start, and an execution that started before the bookmark
    can finish after it; so each partition reads the list down to the start of the
    oldest execution that was still open at the previous sync (anything older was
    finished then, and so delivered then), keeps the finished ones at or after the
    bookmark plus those that were open last time, and emits them in ``finished`` order.
    """

    name = "dexi_executions"
    path = "runs/{run_id}/executions"
    primary_keys = ("_id",)
    replication_key = "finished"
    parent_stream_type = RunsStream
    # One state partition per run (the whole context), which the SDK treats as sorted and
    # so resumable. Executions that were open at the previous sync may come first with an
    # earlier ``finished`` than the bookmark, so the SDK must not object to the order.
    state_partitioning_keys: ClassVar[list[str] | None] = None
    is_sorted = True
    check_sorted = False
    schema = schemas.EXECUTIONS

    _failed_child: str | None = None
    #: Starts each run first when ``dexi.execute_runs`` is on.
    starter: RunStarter | None = None
    #: Results of the partition being emitted, read ahead.
    prefetch: ResultPrefetch | None = None

    def child_failed(self, execution_id: str) -> None:
        """A child (result, files) of this execution failed: the bookmark stays before it."""
        self._failed_child = execution_id

    def _list(self, context: Context, watermark: int | None) -> dict[str, dict[str, Any]]:
        """Every listed execution down to ``watermark`` (epoch ms of ``starts``), by id.

        Executions created while paging push rows to later pages (seen twice, kept once);
        executions deleted meanwhile pull rows to earlier pages (skipped): when
        ``totalRows`` moved, the list is read again.
        """
        url = self.get_url(context)
        rows_by_id: dict[str, dict[str, Any]] = {}
        for _ in range(MAX_LIST_PASSES):
            first_total, total = None, None
            # The listing's own paginator ends it at an empty page, at ``totalRows``, or
            # (without a total) at a short page.
            for response in self.pages(url, functools.partial(self.get_url_params, context)):
                rows = self.documented_list(response, "rows")
                total = response_json(response).get("totalRows")
                first_total = total if first_total is None else first_total
                fresh = 0
                for row in rows:
                    row["starts"] = epoch_ms(row.get("starts"))
                    row["finished"] = epoch_ms(row.get("finished"))
                    fresh += str(row["_id"]) not in rows_by_id
                    rows_by_id[str(row["_id"])] = row
                if total is None and rows and not fresh:
                    break  # no total: a page that repeats is the last
                oldest = rows[-1].get("starts") if rows else None
                if (
                    watermark is not None
                    and isinstance(oldest, int)
                    and oldest < watermark - STOP_MARGIN_MS
                ):
                    break
            if total == first_total:
                break
            self.logger.info(
                "Dexi: executions of run %s changed while paging; reading the list again",
                context["run_id"],
            )
        return rows_by_id

    def request_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        assert context is not None
        if self.settings.execute_runs and self.starter is not None:
            try:
                self.starter.start_and_wait(str(context["run_id"]), self)
            except TimeoutError as exc:
                # Extracted as it is; the execution comes with a later sync once finished.
                self.runtime.record_failure(
                    self.partition_label(context), str(exc), streams=[self.name]
                )
                self.logger.error("%s", exc)
        state = self.get_context_state(context)
        start = self.replication_start(context)
        start_ms = None if start is None else round(start.timestamp() * 1000)
        was_open = set(state.get(OPEN_IDS) or [])
        watermark = state.get(OPEN_SINCE)
        rows = self._list(context, watermark if isinstance(watermark, int) else None)

        open_rows = [r for r in rows.values() if is_open(r)]
        finished = [r for r in rows.values() if not is_open(r)]
        late = [
            r for r in finished if r["_id"] in was_open and start_ms and r["finished"] < start_ms
        ]
        new = [r for r in finished if start_ms is None or r["finished"] >= start_ms]
        # The executions sitting exactly on the bookmark were delivered by the sync that
        # completed this partition; without a lookback they are not sent again.
        bookmark_ms = epoch_ms(state.get("replication_key_value"))
        delivered = set(state.get(AT_BOOKMARK) or [])
        if delivered and bookmark_ms is not None and bookmark_ms == start_ms:
            new = [r for r in new if not (r["finished"] == bookmark_ms and r["_id"] in delivered)]

        def order(row: dict[str, Any]) -> tuple[int, str]:
            return int(row["finished"]), str(row["_id"])

        emit = sorted(late, key=order) + sorted(new, key=order)
        # Computed before emitting: records are rewritten on their way out.
        open_ids = sorted(str(r["_id"]) for r in open_rows)
        next_mark = next_watermark(open_rows, list(rows.values()), watermark)
        if self.progress is not None:
            self.progress.total = len(emit)
        self._failed_child = None
        self.prefetch = self._start_prefetch(str(context["run_id"]), emit)
        try:
            yield from self._emit(context, state, emit, bookmark_ms, delivered)
        finally:
            if self.prefetch is not None:
                self.prefetch.close()
                self.prefetch = None
        if self._failed_child is not None:
            return
        state[OPEN_IDS] = open_ids
        if next_mark is None:
            state.pop(OPEN_SINCE, None)
        else:
            state[OPEN_SINCE] = next_mark

    def _start_prefetch(self, run_id: str, emit: list[dict[str, Any]]) -> ResultPrefetch | None:
        workers = self.common.max_concurrency
        results = [
            c
            for c in self.child_streams
            if isinstance(c, ResultsStream) and c.run_id == run_id and c.selected
        ]
        if workers < 2 or len(emit) < 2 or not results:
            return None
        return ResultPrefetch(results[0].open_result, [str(r["_id"]) for r in emit], workers)

    def _emit(
        self,
        context: Context,
        state: dict[str, Any],
        emit: list[dict[str, Any]],
        bookmark_ms: int | None,
        delivered: set[str],
    ) -> Iterable[dict[str, Any]]:
        sent: list[tuple[int, str]] = []
        for row in emit:
            finished_ms, execution_id = int(row["finished"]), str(row["_id"])
            yield row
            if self._failed_child is not None:
                # Its children ran before the record was counted; without them, the next
                # sync must read this execution again, so the bookmark stays before it.
                self.logger.warning(
                    "Dexi: run %s stops at execution %s, whose result or files failed; "
                    "the next sync starts there again",
                    context["run_id"],
                    self._failed_child,
                )
                settle_bookmark(state, self.replication_key, bookmark_ms, delivered, sent)
                return
            sent.append((finished_ms, execution_id))

        # Stored only once every record above was delivered. Late executions may have
        # moved the bookmark back; it ends on the newest ``finished`` delivered.
        settle_bookmark(state, self.replication_key, bookmark_ms, delivered, sent)

    def post_process(self, row: dict[str, Any], context: Context | None = None) -> dict[str, Any]:
        for name in ("starts", "finished"):
            if name in row:
                row[name] = to_rfc3339(row[name], epoch_unit="ms")
        if context and not row.get("runId"):
            row["runId"] = context["run_id"]
        return row

    def get_child_context(self, record: Record, context: Context | None) -> dict[str, Any]:
        run_id = context["run_id"] if context else record.get("runId")
        return {"run_id": run_id, "execution_id": record["_id"]}

    def sync_children(self, child_context: Context | None) -> None:
        # One results stream per run: an execution concerns only its own run's stream
        # (and the files stream, which comes after it).
        children = self.child_streams
        run_id = (child_context or {}).get("run_id")
        files = self.settings.download_files
        self.child_streams = [
            c
            for c in children
            if getattr(c, "run_id", run_id) == run_id and (files or c.name != "dexi_files")
        ]
        if not any(hasattr(c, "run_id") for c in self.child_streams) and any(
            hasattr(c, "run_id") and (c.selected or c.has_selected_descendents) for c in children
        ):
            self.runtime.warn_once(
                f"Dexi: run {run_id} has no results stream (created after discovery?): "
                "run --discover again to extract its results"
            )
        try:
            super().sync_children(child_context)
        finally:
            self.child_streams = children


#: Statuses that say a result or file is gone for good (never retried).
GONE_STATUSES = frozenset({404, 410})


def _rows(item: Any) -> int:
    """How many rows one value from ``ResultsStream.rows_of_events`` stands for."""
    return len(item) if type(item) is EncodedRecords else 1


def skip_gone(stream: DexiStream, context: Context | None, exc: BaseException) -> bool:
    """A result or file of one execution failed; whether it is skipped as gone.

    The documented rule: one the API says is gone (404/410) cannot come back, so it is
    named in the summary and the bookmark moves past its execution, unless
    ``dexi.strict_results``; any other failure keeps the bookmark before the execution,
    so that the next sync reads it again.
    """
    gone = isinstance(exc, PartitionError) and exc.status in GONE_STATUSES
    if gone and not stream.settings.strict_results:
        label = stream.partition_label(context)
        message = redact(str(exc))
        stream.runtime.record_skip(label, message)
        stream.logger.warning(
            "Dexi: %s is gone (%s); skipped, and the bookmark moves past it "
            "(dexi.strict_results: true fails instead)",
            label,
            message,
        )
        return True
    return False


def notify_parent(stream: DexiStream, context: Context | None) -> None:
    parent = stream.tap.streams.get("dexi_executions")
    if isinstance(parent, ExecutionsStream) and context and "execution_id" in context:
        parent.child_failed(str(context["execution_id"]))


class ResultsStream(LeanRecordLoop, ConformedRecords, ThrottledState, DexiStream):
    """``dexi_results__<run>``: the rows of each newly finished execution of one run."""

    #: Off: every row is made a record on its own, never a run at a time (comparisons).
    ENCODED_ROWS: ClassVar[bool] = True

    path = "executions/{execution_id}/result"
    primary_keys = ("_execution_id", "_row_index")
    parent_stream_type = ExecutionsStream
    # Records are built from the catalog's columns, each cell fitted to its column.
    RECORDS_FIT_SCHEMA = True

    def __init__(
        self,
        tap: Tap,
        *,
        name: str,
        run_id: str,
        columns: dict[str, str | None],
        files: FilesStream | None = None,
    ) -> None:
        self.run_id = run_id
        self.columns = columns
        self.files = files
        properties = {column: column_schema(kind) for column, kind in columns.items()}
        properties["_execution_id"] = {"type": ["string"]}
        properties["_run_id"] = {"type": ["string"]}
        properties["_row_index"] = {"type": ["integer"]}
        schema = schemas.rows_schema(properties)
        super().__init__(tap, name=name, schema=schema)

    def fetch_result(self, execution_id: str) -> Any:
        """One result, whole: it is not paginated (``format=json``)."""
        return self.fetch_json(
            f"executions/{encode_segment(execution_id)}/result", {"format": "json"}
        )

    def open_result(self, execution_id: str) -> requests.Response:
        """One result with its body left unread: the rows are parsed as they arrive, so
        a result of any size costs a chunk of memory, and an opened one waiting in the
        prefetch holds a connection, not a body."""
        return self.stream_body(
            f"{self.url_base}executions/{encode_segment(execution_id)}/result",
            params={"format": "json"},
        )

    def observe_response(self, response: requests.Response) -> None:
        # A result is parsed as it streams in (rows_streamed); reading its total here
        # would parse the whole body first, and hold it, in whichever thread opened it.
        if not getattr(response, "_content_consumed", True):
            return
        super().observe_response(response)

    def request_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        if not context or context.get("run_id") != self.run_id:
            return
        execution_id = str(context["execution_id"])
        cells: list[str] | None = [] if self.files and self.files.wanted else None
        parent = self.tap.streams.get("dexi_executions")
        prefetch = getattr(parent, "prefetch", None)
        future = prefetch.take(execution_id) if prefetch is not None else None
        try:
            response = future.result() if future is not None else self.open_result(execution_id)
        except PartitionError as exc:
            if exc.status != 404:
                raise
            # Executions vanish (deleted, or with their run); the next one goes on.
            self.logger.warning("Skipping a vanished execution's result: %s", exc)
            return
        # EncodedRecords among them only when the lean loop asked for those (_encoded_ids)
        rows = self.rows_streamed(execution_id, response, cells, context)
        yield from cast("Iterable[dict[str, Any]]", rows)
        if self.files is not None and cells is not None:
            self.files.pending[execution_id] = cells

    def rows_streamed(
        self,
        execution_id: str,
        response: requests.Response,
        sink: list[str] | None,
        context: Context | None = None,
    ) -> Iterable[dict[str, Any] | EncodedRecords]:
        """The rows of an opened result; a body cut off mid-way is read again from the
        start (up to the retry limit), skipping the rows already emitted. Runs of rows
        come encoded (``EncodedRecords``) where ``_encoded_ids`` allows it."""
        first = [response]  # the first read is of the result already opened
        ids = self._encoded_ids(context, sink)

        def open_body() -> requests.Response:
            return first.pop() if first else self.open_result(execution_id)

        def read(body: requests.Response, skip: int) -> Iterable[Any]:
            events = self._events(execution_id, body, runs=ids is not None)
            return self.rows_of_events(events, sink, skip=skip, ids=ids)

        what = f"Dexi: the result of execution {execution_id}"
        yield from self.read_streamed(open_body, read, what=what, size=_rows)

    def _encoded_ids(
        self, context: Context | None, sink: list[str] | None
    ) -> tuple[Any, Any] | None:
        """``(_execution_id, _run_id)`` of the records when runs of rows may be passed on
        encoded (``rowtext``): the record loop takes them (``encoded_records_wanted``:
        the lean loop, nothing deselected), no file cells are collected, and the loop
        adds no partition values of its own (the partition is the stream's one state)."""
        if not self.ENCODED_ROWS or not self.encoded_records_wanted or sink is not None:
            return None
        if self.state_partitioning_keys != []:
            return None
        return (context or {}).get("execution_id"), self.run_id

    def _events(
        self, execution_id: str, response: requests.Response, *, runs: bool = False
    ) -> Iterable[tuple[str, str, Any]]:
        return iter_body(
            response.iter_content(_CHUNK_BYTES),
            where=f"{self.platform_title}: GET executions/{execution_id}/result",
            streamed="rows",
            members=("headers",),
            # the progress total, if it comes early (after the rows it is not looked for:
            # that would parse every body twice)
            hints=("totalRows",),
            required=("headers", "rows", "totalRows"),
            runs=runs,
        )

    def rows_of(self, body: Any, sink: list[str] | None) -> Iterable[dict[str, Any]]:
        """The rows of a result body already parsed (a dict), as from the stream."""
        if not isinstance(body, dict):
            return
        events: list[tuple[str, str, Any]] = [
            (MEMBER, k, v) for k, v in body.items() if k != "rows"
        ]
        events += [(ITEM, "rows", row) for row in body.get("rows") or []]
        yield from self.rows_of_events(events, sink)

    def rows_of_events(
        self,
        events: Iterable[tuple[str, str, Any]],
        sink: list[str] | None,
        skip: int = 0,
        ids: tuple[Any, Any] | None = None,
    ) -> Iterable[Any]:
        """Records of a result's events, numbered from 0 and from ``skip`` on; with
        ``ids`` (``_encoded_ids``) runs of rows (``RUN`` events) whose cells all fit
        come as ``EncodedRecords``, the rest record by record."""
        headers: list[str] | None = None
        plan: list[tuple[int, str, str | None, tuple[type, ...]]] = []
        encoder: RowEncoder | None = None
        early: list[Any] = []  # rows that came before the headers (kept until they come)
        index = 0

        def record_of(cells: Any, index: int) -> dict[str, Any]:
            assert headers is not None
            if isinstance(cells, dict):  # rows as objects: align them with the headers
                cells = [cells.get(h) for h in headers]
            size = len(cells)
            record: dict[str, Any] = {}
            for position, header, kind, fit in plan:
                value = cells[position] if position < size else None
                # A cell already of its column's type (the usual case) is taken as is.
                record[header] = (
                    value if value is None or type(value) in fit else conform(value, kind)
                )
            if sink is not None:
                sink.extend(file_cells(cells))
            record["_row_index"] = index
            return record

        for kind, name, value in events:
            if kind == MEMBER:
                if name == "totalRows" and isinstance(value, int) and self.progress is not None:
                    self.progress.total = value
                if name == "headers" and headers is None:
                    headers = [str(h) for h in value or []]
                    plan = self._plan(headers)
                    if ids is not None and [p[0] for p in plan] == list(range(len(headers))):
                        encoder = RowEncoder.for_columns(headers, [p[2] for p in plan])
                    for cells in early:
                        if index >= skip:
                            yield record_of(cells, index)
                        index += 1
                    early = []
                continue
            if kind == RUN:
                if headers is None:
                    early.extend(value)
                    continue
                if index < skip:  # rows a read before this one delivered
                    passed = min(len(value), skip - index)
                    value = value[passed:]
                    index += passed
                texts = None
                if encoder is not None and ids is not None and value:
                    texts = encoder.encode(value, index, *ids)
                if texts is not None:
                    index += len(texts)
                    yield EncodedRecords(texts, b"", [])
                    continue
                for cells in value:
                    yield record_of(cells, index)
                    index += 1
                continue
            if headers is None:
                early.append(value)
                continue
            if index >= skip:
                yield record_of(value, index)
            index += 1
        if early:
            self.runtime.warn_once(f"Dexi: {self.name}: a result has rows but no headers")

    def _plan(self, headers: list[str]) -> list[tuple[int, str, str | None, tuple[type, ...]]]:
        """Per kept column: its position in the rows, name, kind and the types that fit it
        without conversion (exact types: a bool is not an integer here)."""
        unknown = [h for h in headers if h not in self.columns]
        if unknown:
            self.runtime.warn_once(
                f"Dexi: {self.name} has columns not seen at discovery, not extracted: "
                + ", ".join(unknown)
                + " (run --discover again to add them)"
            )
        seen: set[str] = set()
        plan = []
        for position, header in enumerate(headers):
            if header in self.columns and header not in seen:
                seen.add(header)
                kind = self.columns[header]
                plan.append((position, header, kind, _FITS.get(kind, ())))
        return plan

    def _fail_partition(self, context: Context | None, exc: BaseException) -> None:
        if not skip_gone(self, context, exc):
            super()._fail_partition(context, exc)
            notify_parent(self, context)

    def post_process(self, row: dict[str, Any], context: Context | None = None) -> dict[str, Any]:
        row["_execution_id"] = (context or {}).get("execution_id")
        row["_run_id"] = self.run_id
        return row


class DatasetRowsStream(DexiStream):
    """``dexi_dataset_rows__<dataset>``: every row of one dataset, offset/limit in the body."""

    primary_keys = ("_row_index",)
    http_method = "POST"
    payload_as_json = True
    # A POST used for reading: budgeted as a write and as a read (notes, pitfall 13).
    budget_kind = WRITES
    # The credentials were proven on runs already: a 403 here concerns this dataset (lost
    # access), so it fails this stream only.
    auth_fatal_statuses = frozenset({401})

    def __init__(
        self, tap: Tap, *, name: str, dataset_id: str, columns: dict[str, str | None]
    ) -> None:
        self.dataset_id = dataset_id
        self.columns = columns
        properties = {column: column_schema(kind) for column, kind in columns.items()}
        properties["_row_index"] = {"type": ["integer"]}
        schema = schemas.rows_schema(properties)
        super().__init__(tap, name=name, schema=schema)
        self.path = f"datasets/{encode_segment(dataset_id)}/rows"

    def get_url(self, context: Context | None) -> str:
        return self.url_base + (self.path or "")

    def get_url_params(self, context: Context | None, next_page_token: Any) -> dict[str, Any]:
        return {}

    def prepare_request_payload(
        self, context: Context | None, next_page_token: Any
    ) -> dict[str, Any]:
        return {"offset": next_page_token or 0, "limit": PAGE_SIZE}

    def parse_response(self, response: requests.Response) -> Iterable[dict[str, Any]]:
        sent = json.loads(response.request.body or b"{}") if response.request else {}
        offset = int(sent.get("offset") or 0)
        for position, row in enumerate(self.documented_list(response, "rows")):
            if not isinstance(row, dict):
                raise PartitionError(
                    f"{self.where(response)}: a row is a JSON {json_type(row)}, not an object"
                )
            record = {
                name: conform(value, self.columns.get(name))
                for name, value in row.items()
                if name in self.columns
            }
            record["_row_index"] = offset + position
            yield record


class FilesStream(ThrottledState, DexiStream):
    """``dexi_files``: files behind ``FILE:`` cells, streamed to ``dexi.files_dir``.

    Runs after the results stream of the same execution, which hands over the cells it
    saw, so a result is downloaded once.
    """

    name = "dexi_files"
    path = "executions/{execution_id}/file/{file_id}"
    primary_keys = ("file_id",)
    parent_stream_type = ExecutionsStream
    # About 15 downloads per second (doc): the same budget as writes.
    budget_kind = WRITES
    expects_json = False
    schema = schemas.FILES

    def __init__(self, tap: Tap) -> None:
        super().__init__(tap)
        self.pending: dict[str, list[str]] = {}

    @property
    def wanted(self) -> bool:
        return self.settings.download_files and self.selected

    @property
    def requests_session(self) -> requests.Session:
        # File bodies go to disk chunk by chunk, never whole into memory.
        session = super().requests_session
        session.stream = True
        return session

    @property
    def http_headers(self) -> dict[str, Any]:
        return {**super().http_headers, "Accept": "*/*"}

    def _fail_partition(self, context: Context | None, exc: BaseException) -> None:
        if not skip_gone(self, context, exc):
            super()._fail_partition(context, exc)
            notify_parent(self, context)

    def request_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        if not context or not self.settings.download_files:
            return
        execution_id = str(context["execution_id"])
        cells = self.pending.pop(execution_id, None)
        if cells is None:  # the run's results stream is not selected: read the result here
            reader = self.tap.streams["dexi_executions"]
            assert isinstance(reader, DexiStream)
            try:
                body = reader.fetch_rows(
                    f"executions/{encode_segment(execution_id)}/result", {"format": "json"}
                )
            except PartitionError as exc:
                if exc.status != 404:
                    raise
                self.logger.warning("Skipping a vanished execution's files: %s", exc)
                return
            cells = [c for row in body.get("rows") or [] for c in file_cells(row)]
        files_dir = self.settings.files_dir
        wanted: dict[str, str | None] = {}  # file id -> mime type from the cell
        for cell in cells:
            parsed = parse_file_cell(cell)
            if parsed is not None:
                wanted.setdefault(parsed[2], parsed[0])
        if not wanted:
            return

        def fetch(file_id: str) -> tuple[str, int, str, str | None]:
            return download_file(self, execution_id, file_id, files_dir)

        # Downloads overlap (max_concurrency), still at most 15 a second; order is kept.
        workers = max(1, min(self.common.max_concurrency, len(wanted)))
        for file_id, (path, size, sha256, content_type) in zip(
            wanted, read_ahead(wanted, fetch, workers), strict=True
        ):
            yield {
                "file_id": file_id,
                "execution_id": execution_id,
                "run_id": context.get("run_id"),
                "mime_type": wanted[file_id] or content_type,
                "size": size,
                "path": path,
                "sha256": sha256,
            }
