"""What every platform's schemas share: objects open to fields nobody declared, and wide
types for values whose type no spec or official client pins down.

A platform adds fields to its answers without notice; a schema that lists the known fields
and closes the object would drop the new ones (with a warning nobody reads). Every object
schema here, nested ones too, says ``additionalProperties: true``, so a new field reaches the
target as a column. Where a type is only assumed, the schema takes every plausible form
rather than one guess.
"""

from __future__ import annotations

import re
from typing import Any

from singer_sdk import typing as th

#: A scalar whose type is not known for sure: text, a number or nothing.
SCALAR = th.CustomType({"type": ["string", "number", "null"]})
#: An identifier whose type is not known for sure: a whole number or text (never null).
ID = th.CustomType({"type": ["integer", "string"]})
#: Any JSON value at all (an object, a list, a scalar or nothing).
ANY_JSON = th.CustomType({"type": ["object", "array", "string", "number", "boolean", "null"]})
#: An object whose fields are not known, or a list of anything.
OBJECT_OR_LIST = th.CustomType({"type": ["object", "array", "null"], "additionalProperties": True})
#: An object whose fields are not listed (a map, a configuration, a filter).
OBJECT = th.ObjectType(additional_properties=True)
OBJECTS = th.ArrayType(OBJECT)
STRINGS = th.ArrayType(th.StringType)

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,7})?)?(Z|z|[+-]\d{2}:?\d{2})?$"
)


def value_kind(value: Any, *, formats: bool = False) -> str | None:
    """The JSON-Schema type of a decoded value (``None`` for null), for platforms whose
    answers carry no column types. With ``formats``, text that is an ISO date or
    date-time is ``"date"`` or ``"date-time"`` (the ``format`` it would have)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    if formats and isinstance(value, str):
        if _DATETIME.match(value):
            return "date-time"
        if _DATE.match(value):
            return "date"
    return "string"


def opened(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with every object schema in it (top level, nested, array items, the
    options of ``anyOf``/``oneOf``) open to undeclared properties. Changed in place."""
    types = schema.get("type")
    kinds = {types} if isinstance(types, str) else set(types or ())
    if "object" in kinds or "properties" in schema:
        schema["additionalProperties"] = True
    for sub in (schema.get("properties") or {}).values():
        if isinstance(sub, dict):
            opened(sub)
    items = schema.get("items")
    if isinstance(items, dict):
        opened(items)
    for key in ("anyOf", "oneOf", "allOf"):
        for option in schema.get(key) or ():
            if isinstance(option, dict):
                opened(option)
    return schema


def record_schema(*properties: th.Property) -> dict[str, Any]:
    """A stream's schema from its properties, open everywhere."""
    return opened(th.PropertiesList(*properties).to_dict())
