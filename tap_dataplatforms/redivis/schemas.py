"""Redivis schemas, from the published REST API reference and the official Python client.

Reference: the Redivis API documentation (apidocs.redivis.com: the Dataset, Table and
Variable resources, list views), the official client github.com/redivis/redivis-python
(``src/redivis/classes/``: which properties it reads and how it pages), and the project's
notes (``shared/apis/redivis.md``). Rows are typed from the table's variables (``rows.py``).
Every object stays open; objects the reference leaves undescribed are open maps.
"""

from __future__ import annotations

from typing import Any

from singer_sdk import typing as th

from tap_dataplatforms.core.schemas import SCALAR, STRINGS, record_schema

TIMESTAMP = th.DateTimeType

# The owner of a dataset: an organization or a user.
OWNER = th.ObjectType(
    th.Property("kind", th.StringType),
    th.Property("name", th.StringType),
    th.Property("id", th.StringType),
    additional_properties=True,
)
# The base fields of every resource (kind, ids, references, links, times in epoch ms).
REFERENCE_FIELDS = (
    th.Property("kind", th.StringType),
    th.Property("id", th.StringType, required=True),
    th.Property("name", th.StringType),
    th.Property("qualifiedReference", th.StringType),
    th.Property("scopedReference", th.StringType),
    th.Property("referenceId", th.StringType),
    th.Property("url", th.StringType),
    th.Property("uri", th.StringType),
    th.Property("createdAt", TIMESTAMP),
    th.Property("updatedAt", TIMESTAMP),
    th.Property("description", th.StringType),
)

# Dataset, list view.
# The objects a dataset may carry, with their fields declared so that flattening
# (``flattening_enabled``) gives the SCHEMA the same columns as the records; open to more.
TEMPORAL_RANGE = th.ObjectType(
    th.Property("min", th.StringType),
    th.Property("max", th.StringType),
    additional_properties=True,
)
GEO_BBOX = th.ObjectType(
    *(th.Property(side, th.NumberType) for side in ("west", "south", "east", "north")),
    additional_properties=True,
)
SAMPLE_CONFIGURATION = th.ObjectType(
    th.Property("type", th.StringType),
    th.Property("samplePercentage", th.NumberType),
    additional_properties=True,
)

DATASETS = record_schema(
    *REFERENCE_FIELDS,
    th.Property("doi", th.StringType),
    th.Property("owner", OWNER),
    th.Property("labels", STRINGS),
    th.Property("accessLevel", th.StringType),
    th.Property("publicAccessLevel", th.StringType),
    th.Property("tableCount", th.IntegerType),
    th.Property("numBytes", th.IntegerType),
    th.Property("totalNumBytes", th.IntegerType),
    th.Property("temporalRange", TEMPORAL_RANGE),
    th.Property("temporalPrecision", th.StringType),
    th.Property("geoBBox", GEO_BBOX),
    th.Property("sampleConfiguration", SAMPLE_CONFIGURATION),
)

# Table, list view, plus the parent dataset the tap adds.
TABLES = record_schema(
    *REFERENCE_FIELDS,
    th.Property("dataset_id", th.StringType, description="Id of the parent dataset."),
    th.Property("dataset_reference", th.StringType, description="Parent dataset's reference."),
    th.Property("hash", th.StringType),
    th.Property("isSample", th.BooleanType),
    th.Property("isFileIndex", th.BooleanType),
    th.Property("numRows", th.IntegerType),
    th.Property("numBytes", th.IntegerType),
    th.Property("uploadMergeStrategy", th.StringType),
    th.Property("variableCount", th.IntegerType),
)

# Variable, list view (``valueLabels`` and ``description`` come with the single view;
# a value label's value is whatever type the column has), plus the parent table.
VARIABLES = record_schema(
    th.Property("table_reference", th.StringType, required=True),
    th.Property("table_id", th.StringType),
    th.Property("kind", th.StringType),
    th.Property("name", th.StringType, required=True),
    th.Property("type", th.StringType),
    th.Property("index", th.IntegerType),
    th.Property("label", th.StringType),
    th.Property("description", th.StringType),
    th.Property("isFileId", th.BooleanType),
    th.Property(
        "valueLabels",
        th.ArrayType(
            th.ObjectType(
                th.Property("value", SCALAR),
                th.Property("label", th.StringType),
                additional_properties=True,
            )
        ),
    ),
    th.Property("uri", th.StringType),
    th.Property("url", th.StringType),
)

# Variable types (``boolean``, ``integer``, ``float``, ``string``, ``date``, ``dateTime``,
# ``time``, ``geography``) to JSON Schema; text for anything else.
JSON_TYPES: dict[str, th.JSONTypeHelper[Any]] = {
    "integer": th.IntegerType(),
    "float": th.NumberType(),
    "boolean": th.BooleanType(),
    "date": th.DateType(),
    "dateTime": th.DateTimeType(),
    "time": th.TimeType(),
}


def rows_schema(variables: list[dict[str, Any]]) -> dict[str, Any]:
    """A table's rows: one column per variable, typed by the variable's ``type``."""
    properties = [
        th.Property(v["name"], JSON_TYPES.get(v.get("type", ""), th.StringType()))
        for v in variables
    ]
    row_number = th.Property(
        "_row_number",
        th.IntegerType,
        required=True,
        description="Position of the row within this read session (stream-interleaved).",
    )
    return record_schema(*properties, row_number)
