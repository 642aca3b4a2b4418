"""Dexi.io schemas, from its published API spec and official clients.

Reference: the Dexi API reference (api.dexi.io, the OpenAPI spec behind the generated
clients: ``Run``, ``Execution``), the official PHP client (``version`` on runs), and the
project's notes (``shared/apis/dexi.md``). Result and dataset-row columns come from the
data itself (``columns.py``). Types the notes mark as assumed take every plausible form;
every object stays open.
"""

from __future__ import annotations

from typing import Any

from singer_sdk import typing as th

from tap_dataplatforms.core.schemas import OBJECT_OR_LIST, SCALAR, opened, record_schema

TIMESTAMP = th.DateTimeType

# Run: ``version`` is an integer by the PHP client's updates (type assumed); ``inputs``
# (and other settings) are not in the spec: an object or a list of input maps.
RUNS = record_schema(
    th.Property("_id", th.StringType, required=True),
    th.Property("name", th.StringType),
    th.Property("accountId", th.StringType),
    th.Property("robotId", th.StringType),
    th.Property("robotName", th.StringType),
    th.Property("version", SCALAR),
    th.Property("inputs", OBJECT_OR_LIST),
)

# Execution: ``starts``/``finished`` arrive as epoch milliseconds, leave as RFC 3339.
EXECUTIONS = record_schema(
    th.Property("_id", th.StringType, required=True),
    th.Property("state", th.StringType),
    th.Property("starts", TIMESTAMP),
    th.Property("finished", TIMESTAMP),
    th.Property("robotId", th.StringType),
    th.Property("runId", th.StringType),
    th.Property("run_id", th.StringType, description="The state partition: runId."),
)

# A record of the tap's own (a file behind a ``FILE:`` cell, once downloaded).
FILES = record_schema(
    th.Property("file_id", th.StringType, required=True),
    th.Property("execution_id", th.StringType),
    th.Property("run_id", th.StringType),
    th.Property("mime_type", th.StringType),
    th.Property("size", th.IntegerType),
    th.Property("path", th.StringType),
    th.Property("sha256", th.StringType),
)


def rows_schema(properties: dict[str, Any]) -> dict[str, Any]:
    """A result's or a dataset's rows: the columns found, and any column found later."""
    return opened({"type": "object", "properties": properties})
