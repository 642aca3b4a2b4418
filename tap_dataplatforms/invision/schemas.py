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

from tap_dataplatforms.core.schemas import opened, record_schema

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

# A monitoring log row (field names documented, types not: ``data`` may hold JSON text).
EXECUTION_LOG = record_schema(
    th.Property("rowid", th.IntegerType, required=True),
    th.Property("timestamputc", th.DateTimeType, description="Event time, RFC 3339 UTC."),
    th.Property("level", th.StringType, description="Error, Information, Warning, Verbose."),
    th.Property("logevent", th.StringType),
    th.Property("data", th.StringType, description="The event text."),
)


def table_schema(schema: dict[str, Any] | None) -> dict[str, Any]:
    """A table's rows: the columns sampled (none when it could not be sampled), and any
    column that turns up later."""
    return opened(schema or {"type": "object", "properties": {}})
