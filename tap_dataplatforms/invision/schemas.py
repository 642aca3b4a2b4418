"""Profitbase InVision schemas, from its published API documentation.

Reference: the InVision documentation's Data Flow Execution API page (``runId``,
``status``), its Monitoring HTTP API page (log rows: ``rowid``, ``data``, ``level``,
``timestamputc``, ``logevent``) and its JSON Data API page (rows of a table), with the
project's notes (``shared/apis/invision.md``). A table's columns are typed from a sample
of its rows, as the API publishes no table metadata. Every object stays open.
"""

from __future__ import annotations

from typing import Any

from singer_sdk import typing as th

from tap_dataplatforms.core.schemas import ANY_JSON, ID, SCALAR, opened, record_schema

# One record per run the tap started: the API answers only ``runId`` and ``status``, the
# rest is the tap's own observation.
DATAFLOW_RUNS = record_schema(
    th.Property("run_id", th.StringType, required=True),
    th.Property("dataflow_id", th.StringType, required=True),
    th.Property(
        "status", th.StringType, description="Pending, Running, Succeeded, Failed, TimedOut."
    ),
    th.Property("started_at", th.DateTimeType, description="Tap clock at the start answer."),
    th.Property(
        "finished_at",
        th.DateTimeType,
        description="Tap clock at the first poll that saw a final status (an upper bound).",
    ),
    th.Property("duration_seconds", th.NumberType),
    th.Property("polls", th.IntegerType, description="Status calls made."),
    th.Property("timed_out", th.BooleanType),
)

# A monitoring log row. The field names are documented, their types are not: an id may be
# a number or text, an installation whose serializer writes .NET enums as numbers sends
# ``level`` and ``logevent`` as numbers, and ``data`` may be text (which may hold JSON
# text) or the structured event itself. Each is declared wide and passed on as sent.
EXECUTION_LOG = record_schema(
    th.Property("rowid", ID, required=True),
    th.Property("timestamputc", th.DateTimeType, description="Event time, RFC 3339 UTC."),
    th.Property(
        "level", SCALAR, description="Error, Information, Warning, Verbose (or their numbers)."
    ),
    th.Property("logevent", SCALAR),
    th.Property("data", ANY_JSON, description="The event text, or the event as an object."),
)


def table_schema(schema: dict[str, Any] | None) -> dict[str, Any]:
    """A table's rows: the columns sampled (none when it could not be sampled), and any
    column that turns up later."""
    return opened(schema or {"type": "object", "properties": {}})
