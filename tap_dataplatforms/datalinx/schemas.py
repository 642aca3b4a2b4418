"""Datalinx AI schemas: the instance's OpenAPI document when it serves one, else these.

Reference: each instance publishes its API at ``/api/openapi.json`` (docs.datalinx.ai, "API
Overview"); that document is the authority, and discovery takes every resource's properties
from it (``openapi.py``). The schemas written here are the fallback, from the documented
examples and the project's notes (``shared/apis/datalinx.md``): most fields there are
assumed, so their types are wide where a value could plausibly take another form. Every
object stays open, so a field the notes miss still reaches the target.
"""

from __future__ import annotations

from typing import Any

from singer_sdk import typing as th

from tap_dataplatforms.core.schemas import ANY_JSON, OBJECT, OBJECTS, SCALAR, STRINGS, record_schema

TIMESTAMP = th.DateTimeType
TIMES = (th.Property("created_at", TIMESTAMP), th.Property("updated_at", TIMESTAMP))
#: Properties the tap adds to a workspace's records: the workspace's name (the key) and
#: its id (what joins to datalinx_workspaces, and what bookmarks are kept by).
SCOPED_KEY = (
    th.Property("workspace", th.StringType, required=True, description="Workspace name."),
    th.Property("id", th.StringType, required=True),
    th.Property("workspace_id", th.StringType, description="Workspace id."),
)
#: Properties the tap sets itself, whatever an OpenAPI document says of them.
TAP_FIELDS = frozenset({"workspace", "workspace_id", "pipeline_id"})

# Workspace (doc: id, name, created_at; config as in the documented create body).
WORKSPACES = record_schema(
    th.Property("id", th.StringType, required=True),
    th.Property("name", th.StringType),
    *TIMES,
    th.Property("config", OBJECT),
)
SOURCES = record_schema(
    *SCOPED_KEY,
    th.Property("name", th.StringType),
    th.Property("type", th.StringType),
    th.Property("connector", th.StringType),
    th.Property("status", th.StringType),
    th.Property("description", th.StringType),
    th.Property("config", OBJECT, description="Connection settings, credentials removed."),
    *TIMES,
)
# Schemas are addressed by table name; ``id`` may be absent (the tap then builds one).
SCHEMAS = record_schema(
    *SCOPED_KEY,
    th.Property("name", th.StringType),
    th.Property("schema_type", th.StringType),
    th.Property("table_name", th.StringType),
    th.Property("source_id", th.StringType),
    th.Property("columns", OBJECTS),
    *TIMES,
)
# Mappings are addressed by target table name (doc); ``fields`` as the guide shows them.
MAPPINGS = record_schema(
    *SCOPED_KEY,
    th.Property("name", th.StringType),
    th.Property("table_name", th.StringType),
    th.Property("source_table", th.StringType),
    th.Property("fields", OBJECTS),
    *TIMES,
)
PIPELINES = record_schema(
    *SCOPED_KEY,
    th.Property("name", th.StringType),
    th.Property("description", th.StringType),
    th.Property("status", th.StringType),
    th.Property("schedule", ANY_JSON, description="A cron text, or a schedule object."),
    th.Property("last_run_at", TIMESTAMP),
    th.Property("last_run_status", th.StringType),
    *TIMES,
)
PIPELINE_RUNS = record_schema(
    *SCOPED_KEY,
    th.Property("pipeline_id", th.StringType),
    th.Property("status", th.StringType),
    th.Property("started_at", TIMESTAMP),
    th.Property("finished_at", TIMESTAMP),
    th.Property("duration_seconds", th.NumberType),
    th.Property("records_processed", th.NumberType),
    th.Property("error", ANY_JSON, description="A message, or an error object."),
    th.Property("triggered_by", th.StringType),
)
AUDIENCES = record_schema(
    *SCOPED_KEY,
    th.Property("name", th.StringType),
    th.Property("description", th.StringType),
    th.Property("definition", ANY_JSON),
    th.Property("size", th.NumberType),
    th.Property("status", th.StringType),
    *TIMES,
)
QUERIES = record_schema(
    *SCOPED_KEY,
    th.Property("name", th.StringType),
    th.Property("description", th.StringType),
    th.Property("sql", th.StringType),
    th.Property("created_by", SCALAR),
    th.Property("last_run_at", TIMESTAMP),
    *TIMES,
)
ALERTS = record_schema(
    *SCOPED_KEY,
    th.Property("name", th.StringType),
    th.Property("type", th.StringType),
    th.Property("severity", th.StringType),
    th.Property("status", th.StringType),
    th.Property("target", ANY_JSON, description="A table, column or pipeline reference."),
    th.Property("condition", ANY_JSON),
    th.Property("triggered_at", TIMESTAMP),
    *TIMES,
)
USERS = record_schema(
    th.Property("id", th.StringType, required=True),
    th.Property("email", th.StringType),
    th.Property("name", th.StringType),
    th.Property("roles", STRINGS),
    th.Property("is_active", th.BooleanType),
    th.Property("created_at", TIMESTAMP),
    th.Property("last_login_at", TIMESTAMP),
)
ROLES = record_schema(
    th.Property("id", th.StringType, required=True),
    th.Property("name", th.StringType),
    th.Property("description", th.StringType),
    th.Property("permissions", STRINGS),
    th.Property("is_system", th.BooleanType),
    *TIMES,
)
SERVICE_ACCOUNTS = record_schema(
    th.Property("id", th.StringType, required=True),
    th.Property("name", th.StringType),
    th.Property("description", th.StringType),
    th.Property("role", th.StringType),
    th.Property("created_at", TIMESTAMP),
    th.Property("last_used_at", TIMESTAMP),
    th.Property("api_key_prefix", th.StringType),
)


def merged(written: dict[str, Any], published: dict[str, Any]) -> dict[str, Any]:
    """A stream's schema with the published properties of its resource: theirs where both
    name a property (but the tap's own fields stay the tap's), the written ones kept for
    what the document leaves out, the keys still required. A property the document calls
    required may still come as null from an instance, so every one may be null here."""
    properties = dict(written["properties"])
    for name, spec in (published.get("properties") or {}).items():
        if name not in TAP_FIELDS:
            properties[name] = _nullable(spec)
    return {**written, "properties": properties, "additionalProperties": True}


def _nullable(spec: dict[str, Any]) -> dict[str, Any]:
    types = spec.get("type")
    if isinstance(types, list) and "null" not in types:
        return {**spec, "type": [*types, "null"]}
    if "anyOf" in spec and {"type": ["null"]} not in spec["anyOf"]:
        return {**spec, "anyOf": [*spec["anyOf"], {"type": ["null"]}]}
    return spec
