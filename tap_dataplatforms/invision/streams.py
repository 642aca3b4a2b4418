"""InVision streams: data flow runs, the data-flow execution log, table data."""

from __future__ import annotations

import datetime as dt
import functools
import itertools
from collections.abc import Generator, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import requests
from singer_sdk.pagination import BaseAPIPaginator
from singer_sdk.streams.rest import HTTPRequest, PageContext

from tap_dataplatforms.core.errors import PartitionError
from tap_dataplatforms.core.http import json_type, response_json
from tap_dataplatforms.core.jsonbody import iter_array
from tap_dataplatforms.core.partition import first_partition
from tap_dataplatforms.core.timestamps import UTC, format_rfc3339, parse_datetime, to_invision
from tap_dataplatforms.invision import schemas
from tap_dataplatforms.invision.client import InVisionStream
from tap_dataplatforms.invision.runs import DataflowRunsStream

if TYPE_CHECKING:
    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context

__all__ = ["DataflowRunsStream", "ExecutionLogStream", "TableStream"]


#: One monitoring request covers at most this much time.
WINDOW = dt.timedelta(days=1)
#: A window answered with at least this many rows is followed by one half as long.
LARGE_WINDOW_ROWS = 10_000
MIN_WINDOW = dt.timedelta(minutes=5)
#: The filter has whole seconds and its bounds' inclusiveness is not documented,
#: so consecutive windows share one second; rows seen twice are dropped by ``rowid``.
OVERLAP = dt.timedelta(seconds=1)
#: How far back a first sync reads when no ``start_date`` is set.
DEFAULT_HISTORY = dt.timedelta(days=30)

Window = tuple[dt.datetime, dt.datetime]


class FilterRequest(HTTPRequest):
    """Query parameters with the documented encoding: the filter's space as ``%20``."""

    def encode_params(self) -> str:
        return urlencode(self.params, quote_via=quote)


class WindowPaginator(BaseAPIPaginator[Window]):
    """Consecutive time windows up to the sync's start; empty windows do not stop it."""

    def __init__(self, first: Window, until: dt.datetime) -> None:
        super().__init__(first)
        self.until = until

    def get_next(self, response: requests.Response) -> Window | None:
        start, end = self.current_value
        if end >= self.until:
            return None
        span = WINDOW
        try:
            if len(response_json(response)) >= LARGE_WINDOW_ROWS:
                span = max((end - start) / 2, MIN_WINDOW)
        except (TypeError, ValueError):
            pass
        following = end - OVERLAP
        return following, min(following + span, self.until)

    def continue_if_empty(self, response: requests.Response) -> bool:
        return self.get_next(response) is not None


class ExecutionLogStream(InVisionStream):
    """Data-flow execution events of the Monitoring API, read in time windows."""

    name = "invision_execution_log"
    path = "/api/v1/monitoring"
    primary_keys = ("rowid",)
    replication_key = "timestamputc"
    is_sorted = True
    # One partition: its bookmark is the stream's, and resumable because it is sorted.
    state_partitioning_keys = None
    key_setting = "monitoring_api_key"
    log_event_type = "DataFlowExecution"
    schema = schemas.EXECUTION_LOG

    @property
    def check_sorted(self) -> bool:
        # Each window is emitted sorted; rows re-read through lookback_seconds, or late
        # rows of the shared second, may sit below the bookmark and are still wanted.
        return False

    def sync_until(self) -> dt.datetime:
        """The sync's start, to the second: the upper bound of the last window."""
        until = getattr(self, "_sync_until", None)
        if until is None:
            now = dt.datetime.fromtimestamp(self.budget.clock.time(), tz=UTC)
            until = self._sync_until = now.replace(microsecond=0)
        return until

    def get_replication_key_signpost(self, context: Context | None = None) -> dt.datetime:
        return self.sync_until()

    def window_start(self, context: Context | None) -> dt.datetime:
        start = self.replication_start(context)
        if start is None:
            start = self.sync_until() - DEFAULT_HISTORY
            self.logger.info(
                "No start_date: reading the InVision execution log from %s", start.isoformat()
            )
        return start

    def get_new_paginator(self) -> WindowPaginator:
        # The filter has whole seconds: the first window starts at the bookmark's second.
        until = self.sync_until()
        start = self._lower_bound.replace(microsecond=0)
        return WindowPaginator((start, min(start + WINDOW, until)), until)

    def request_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        self._lower_bound = self.window_start(context)
        self._previous_rowids: set[Any] = set()
        self._rows_since_state = 0
        if not first_partition(self.common.partition):
            return  # the log has no parent to split: the first process reads it
        if self._lower_bound >= self.sync_until():
            return
        yield from super().request_records(context)

    def get_url_params(
        self, context: Context | None, next_page_token: Window | None
    ) -> dict[str, Any]:
        assert next_page_token is not None
        start, end = next_page_token
        self._window_end = end
        return {
            "logEventType": self.log_event_type,
            "fromDateTimeUtc": to_invision(start),
            "toDateTimeUtc": to_invision(end),
        }

    def get_http_request(self, *, page: PageContext) -> HTTPRequest:
        request = super().get_http_request(page=page)
        return FilterRequest(request.url, request.method, request.params, request.headers)

    def parse_response(self, response: requests.Response) -> Iterable[dict[str, Any]]:
        body = response_json(response)
        if not isinstance(body, list):
            raise PartitionError(
                f"{self.platform_title}: the monitoring API answered with a JSON "
                f"{type(body).__name__}, not a list of log rows"
            )
        if self._rows_since_state:
            # Every row of the previous window is written and counted: a STATE now lets
            # an interrupted sync resume at this window instead of the first one.
            self.write_state_message()
            self._rows_since_state = 0
        rows = []
        wanted = self.log_event_type.lower()
        for row in body:
            if not isinstance(row, dict):
                self.runtime.warn_once(
                    f"InVision: skipping execution log entries that are not objects, e.g. a "
                    f"JSON {json_type(row)}"
                )
                continue
            event = row.get("logevent")
            if isinstance(event, str) and event.lower() != wanted:
                continue  # an installation that ignores the event filter
            moment = _moment(row.get("timestamputc"))
            if moment is None:
                self.runtime.warn_once(
                    f"InVision: skipping execution log rows without a readable timestamputc, "
                    f"e.g. rowid {row.get('rowid')!r}: {str(row.get('timestamputc'))[:40]!r}"
                )
                continue
            if moment < self._lower_bound:
                continue  # before the bookmark: the filter has whole seconds only
            if moment > self._window_end:
                continue  # the next window (or sync) has it; bounds may be loose
            row["timestamputc"] = format_rfc3339(moment)
            rowid = row.get("rowid")
            if isinstance(rowid, str) and rowid.strip().isdigit():
                row["rowid"] = rowid = int(rowid)
            rows.append((moment, _rowid_order(rowid), row))
        rows.sort(key=lambda item: (item[0], item[1]))
        seen = self._previous_rowids
        self._previous_rowids = {row.get("rowid") for _, _, row in rows}
        for _, _, row in rows:
            if row.get("rowid") not in seen:
                self._rows_since_state += 1
                yield row


def _moment(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return parse_datetime(value)
    except ValueError:
        return None


def _rowid_order(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, int) else (1, str(value))


class TableStream(InVisionStream):
    """All rows of one table through the JSON Data API; columns typed from a sample."""

    path = "/api/pub/v1/db/tables/{table}/data"
    primary_keys = ()
    key_setting = "data_api_key"
    # Rows are decoded as they are read; a broken body surfaces in ``parse_response``.
    expects_json = False
    # A whole table is one body (no pagination): read it as it arrives.
    stream_bodies = True

    def __init__(self, tap: Tap, table: str, name: str, schema: dict[str, Any]) -> None:
        self.table = table
        self.sample_ok = False
        #: Discovery could not sample the table, so its schema has no columns.
        self.untyped = False
        super().__init__(tap, schema=schema, name=name)
        properties = self.schema.get("properties", {})
        self.datetime_columns = [
            column
            for column, spec in properties.items()
            if isinstance(spec, dict) and spec.get("format") == "date-time"
        ]

    @property
    def partitions(self) -> list[dict[str, Any]]:
        return [{"table": self.table}]

    def get_url_params(self, context: Context | None, next_page_token: Any) -> dict[str, Any]:
        return {}

    def request_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        for row in self.read_rows(context):
            if self.untyped:
                # The schema sent has no columns, so the rows would arrive empty: the table
                # fails instead (a read error, if any, has been raised by now).
                raise PartitionError(
                    f"{self.platform_title}: table '{self.table}' could not be sampled "
                    "during discovery to type its columns, so its rows are not extracted; "
                    "run again"
                )
            yield row

    def read_rows(
        self, context: Context | None, retries: int | None = None
    ) -> Generator[dict[str, Any], None, None]:
        """The table's rows; a body that breaks off (cut, truncated, stalled) is read
        again from the start, up to the retry limit, past the rows already delivered:
        the rows have no key, so one delivered twice would be a duplicate downstream."""
        url = self.get_url(context or {"table": self.table})
        return self.read_streamed(
            functools.partial(self.stream_body, url, context=context, retries=retries),
            lambda response, skip: itertools.islice(self.parse_response(response), skip, None),
            what=f"{self.platform_title}: table '{self.table}'",
            retries=retries,
        )

    def parse_response(self, response: requests.Response) -> Iterable[dict[str, Any]]:
        """Rows as they arrive; a broken body raises ValueError (``request_records``
        reads it again), an element that is no row fails the table."""
        where = f"{self.platform_title}: GET {self.path.format(table=self.table)}"
        for row in iter_array(response.iter_content(chunk_size=65536), where=where):
            if not isinstance(row, dict):
                raise PartitionError(
                    f"{self.platform_title}: table '{self.table}' holds a JSON "
                    f"{json_type(row)} where a row (an object) belongs"
                )
            yield row

    def post_process(self, row: dict[str, Any], context: Context | None = None) -> dict[str, Any]:
        for column in self.datetime_columns:
            value = row.get(column)
            if isinstance(value, str):
                moment = _moment(value)
                if moment is not None:
                    row[column] = format_rfc3339(moment)
        return row
