"""Profitbase InVision: data flow runs, the execution log, table data."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from tap_dataplatforms.core.config import PlatformSpec
from tap_dataplatforms.core.errors import PlatformAuthError
from tap_dataplatforms.core.http import CHECK_RETRIES, check_connection
from tap_dataplatforms.core.naming import distinct_slugs
from tap_dataplatforms.core.partition import in_partition
from tap_dataplatforms.core.settings import of_tap
from tap_dataplatforms.core.timestamps import to_invision
from tap_dataplatforms.invision import schemas
from tap_dataplatforms.invision.inference import infer_schema
from tap_dataplatforms.invision.settings import SETTINGS, InvisionSettings
from tap_dataplatforms.invision.streams import DataflowRunsStream, ExecutionLogStream, TableStream

if TYPE_CHECKING:
    from singer_sdk import Stream, Tap


#: Rows of a table read at discovery to type its columns.
SAMPLE_ROWS = 200
TABLE_PREFIX = "invision_table__"


def table_stream_names(tables: list[str]) -> dict[str, str]:
    """Stream name of each table; a slug two tables share gets a short hash of the name."""
    slugs = distinct_slugs(
        [(t, t) for t in tables],
        suffix=lambda table: hashlib.sha256(table.encode("utf-8")).hexdigest()[:8],
        fallback="table",
    )
    return {table: TABLE_PREFIX + name for table, name in slugs.items()}


def catalog_schema(tap: Tap, name: str) -> dict[str, Any] | None:
    catalog = tap.input_catalog
    entry = catalog.get(name) if catalog is not None else None
    if entry is None:
        return None
    schema = entry.schema.to_dict()
    return schema if schema.get("properties") else None


def sampled_schema(stream: TableStream) -> dict[str, Any] | None:
    """Types of a table's columns from its first rows; ``None`` when it cannot be read."""
    context = {"table": stream.table}
    try:
        rows = []
        # Through the stream's own reading, so that a body cut off is read again: a table
        # that cannot be sampled gets no columns, and its rows would arrive empty.
        with contextlib.closing(stream.read_rows(context, retries=CHECK_RETRIES)) as reading:
            for row in reading:
                rows.append(row)
                if len(rows) >= SAMPLE_ROWS:
                    break  # closing the generator closes the response: the rest is not needed
    except PlatformAuthError:
        raise
    except Exception as exc:
        stream.logger.warning(
            "InVision: cannot sample table '%s' to type its columns: %s", stream.table, exc
        )
        return None
    return infer_schema(rows)


def build_streams(tap: Tap) -> list[Stream]:
    parsed = of_tap(tap)
    block = parsed.of(InvisionSettings, "invision")
    streams: list[Stream] = [DataflowRunsStream(tap), ExecutionLogStream(tap)]
    # Names come from every configured table, so that a partition's stream has the name
    # a full sync gives it (a slug shared with a table of another partition included).
    names = table_stream_names(list(dict.fromkeys(block.tables or ())))
    for table, name in names.items():
        if not in_partition(parsed.common.partition, table):
            continue
        schema = catalog_schema(tap, name)
        if schema is None:
            probe = TableStream(tap, table, name, schemas.table_schema(None))
            schema = sampled_schema(probe)
            stream = TableStream(tap, table, name, schemas.table_schema(schema))
            stream.sample_ok = schema is not None
            stream.untyped = schema is None
        else:
            stream = TableStream(tap, table, name, schema)
        streams.append(stream)
    return streams


def check(tap: Tap) -> None:
    """Prove the host and keys without side effects; never start a data flow.

    The execution log is asked for one minute; a table that discovery already read has
    proven the data key, otherwise the first selected table is read once.
    """
    streams = [s for s in tap.streams.values() if getattr(s, "platform", None) == "invision"]
    for stream in streams:
        if isinstance(stream, ExecutionLogStream) and stream.selected:
            # Not the stream's own upper bound: that is taken when the log is read, after
            # the data flows this sync starts, so that their events are included.
            until = dt.datetime.fromtimestamp(stream.budget.clock.time(), tz=dt.timezone.utc)
            params = {
                "logEventType": stream.log_event_type,
                "fromDateTimeUtc": to_invision(until - dt.timedelta(minutes=1)),
                "toDateTimeUtc": to_invision(until),
            }
            check_connection(stream, f"{stream.path}?{urlencode(params, quote_via=quote)}")
    tables = [s for s in streams if isinstance(s, TableStream) and s.selected]
    if tables and not any(t.sample_ok for t in tables):
        first = tables[0]
        check_connection(first, first.get_url({"table": first.table})[len(first.url_base) :])


PLATFORM = PlatformSpec(
    key="invision",
    title="InVision",
    settings=SETTINGS,
    settings_class=InvisionSettings,
    credential_groups=(("api_url", "api_key"),),
    streams=(DataflowRunsStream, ExecutionLogStream),
    build_streams=build_streams,
    check=check,
)
