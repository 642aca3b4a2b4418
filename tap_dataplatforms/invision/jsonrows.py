"""Rows of a bare JSON array, read as they arrive, and column types inferred from values.

The JSON Data API returns a whole table as one array with no metadata endpoint
(shared/apis/invision.md, section 6), so rows are decoded one by one instead of the
body at once, and the schema comes from a sample of rows.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

_WHITESPACE = " \t\r\n"
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,7})?)?(Z|z|[+-]\d{2}:?\d{2})?$"
)


def iter_json_array(chunks: Iterable[bytes]) -> Iterator[Any]:
    """The elements of a JSON array, decoded from byte chunks one element at a time."""
    decoder = json.JSONDecoder()
    text = codecs.getincrementaldecoder("utf-8-sig")()
    buffer = ""
    state = "start"  # start -> first -> (value -> comma)* -> done
    for chunk in _with_end(chunks):
        final = chunk is None
        buffer += text.decode(chunk or b"", final=final)
        pos = 0
        while True:
            while pos < len(buffer) and buffer[pos] in _WHITESPACE:
                pos += 1
            if pos >= len(buffer):
                break
            char = buffer[pos]
            if state == "start":
                if char != "[":
                    raise ValueError("the body is not a JSON array")
                state, pos = "first", pos + 1
            elif state == "done":
                raise ValueError("unexpected data after the JSON array")
            elif state in ("first", "comma") and char == "]":
                state, pos = "done", pos + 1
            elif state == "comma":
                if char != ",":
                    raise ValueError(f"unexpected {char!r} between array elements")
                state, pos = "value", pos + 1
            else:
                try:
                    value, end = decoder.raw_decode(buffer, pos)
                except json.JSONDecodeError:
                    if final:
                        raise ValueError("broken JSON array") from None
                    break  # the element continues in the next chunk
                if end == len(buffer) and not final and not isinstance(value, (dict, list)):
                    break  # a number or literal may continue in the next chunk
                yield value
                state, pos = "comma", end
        buffer = buffer[pos:]
    if state != "done":
        raise ValueError("truncated JSON array")


def _with_end(chunks: Iterable[bytes]) -> Iterator[bytes | None]:
    yield from chunks
    yield None


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
    if json_types == {"integer", "number"}:
        json_types = {"number"}
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
