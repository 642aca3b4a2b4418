"""Column types inferred from values.

The JSON Data API returns a whole table as one array with no metadata endpoint
(shared/apis/invision.md, section 6), so the schema comes from a sample of rows (read as
they arrive by ``core.jsonbody``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tap_dataplatforms.core.schemas import value_kind


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
            kind = value_kind(value, formats=True)
            if kind is not None:
                seen.add(kind)
    properties = {name: _column_schema(seen) for name, seen in kinds.items()}
    return {"type": "object", "properties": properties}
