"""Column types inferred from values.

The JSON Data API returns a whole table as one array with no metadata endpoint
(shared/apis/invision.md, section 6), so the schema comes from a sample of rows (read as
they arrive by ``core.jsonbody``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,7})?)?(Z|z|[+-]\d{2}:?\d{2})?$"
)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        if _DATETIME.match(value):
            return "date-time"
        if _DATE.match(value):
            return "date"
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "string"


def _column_schema(kinds: set[str]) -> dict[str, Any]:
    if kinds in ({"date-time"}, {"date"}):
        return {"type": ["string", "null"], "format": next(iter(kinds))}
    types = {"date-time": "string", "date": "string"}
    json_types = {types.get(k, k) for k in kinds} or {"string"}
    if "integer" in json_types:
        # Declared number, as for integers mixed with fractions: a SQL target does not
        # widen a bigint column when fractions arrive later (target-postgres rounds).
        json_types = (json_types - {"integer"}) | {"number"}
    order = ("string", "number", "integer", "boolean", "object", "array")
    schema: dict[str, Any] = {"type": [t for t in order if t in json_types] + ["null"]}
    if "array" in json_types:
        schema["items"] = {}
    return schema


def infer_schema(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """A JSON schema for rows: every column nullable, typed from the values seen."""
    kinds: dict[str, set[str]] = {}
    for row in rows:
        for name, value in row.items():
            seen = kinds.setdefault(name, set())
            if value is not None:
                seen.add(_kind(value))
    properties = {name: _column_schema(seen) for name, seen in kinds.items()}
    return {"type": "object", "properties": properties}
