"""Result and dataset columns: stream slugs and JSON-Schema types inferred from values.

Dexi results carry no column types (only ``headers`` and rows of cells), so types come
from the values: integers widen to number, anything mixed with a string (or with a
different kind) becomes string, arrays stay arrays, and every column is nullable.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tap_dataplatforms.core.naming import distinct_slugs, slug
from tap_dataplatforms.core.schemas import value_kind


def slugify(text: str) -> str:
    """``"Price watch DE"`` -> ``price_watch_de``; ``"storeLocator"`` -> ``store_locator``."""
    return slug(text, "")


def run_slugs(
    runs: Sequence[tuple[str, str]], overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Run id -> the ``<run>`` of its results stream ``dexi_results__<run>``.

    ``runs`` in the order ``GET runs`` lists them: newest first (doc). The rule, so that a
    stream never changes its name when another run appears: the slug of the run's name;
    where several runs share a slug, the oldest of them keeps the bare slug and each newer
    one gets ``_`` + the first 8 characters of its id. ``overrides`` (setting
    ``dexi.result_stream_names``, run id -> name) pins a run's name explicitly.
    """
    overrides = overrides or {}
    named = distinct_slugs(
        [(run_id, name) for run_id, name in runs if run_id not in overrides],
        suffix=lambda run_id: run_id[:8],
        fallback="run",
        bare=lambda sharing: sharing[-1],  # newest first: the last is the oldest
    )
    return {
        run_id: slug(overrides[run_id], "run") if run_id in overrides else named[run_id]
        for run_id, _ in runs
    }


def merge_kinds(kinds: Iterable[str | None]) -> str | None:
    found = {k for k in kinds if k is not None}
    if not found:
        return None
    if len(found) == 1:
        return found.pop()
    if found == {"integer", "number"}:
        return "number"
    return "string"


def column_schema(kind: str | None) -> dict[str, Any]:
    if kind == "array":
        return {"type": ["array", "null"], "items": {}}
    if kind == "object":
        return {"type": ["object", "null"], "additionalProperties": True}
    # A column seen only empty is typed string: the most forgiving choice. Whole numbers
    # are declared number: a column that holds fractions later (a scraped price) then
    # needs no type change in the warehouse, which SQL targets do not make (target-postgres
    # keeps a bigint column and rounds what arrives); the values stay whole numbers.
    if kind == "integer":
        return {"type": ["number", "null"]}
    return {"type": [kind or "string", "null"]}


def infer_columns(headers: Sequence[str], rows: Iterable[Any]) -> dict[str, str | None]:
    """Column name -> inferred kind, from result rows aligned with ``headers``."""
    kinds: dict[str, set[str | None]] = {h: set() for h in headers}
    for row in rows:
        if isinstance(row, dict):
            row = [row.get(h) for h in headers]
        for header, value in zip(headers, row, strict=False):
            kinds[header].add(value_kind(value))
    return {h: merge_kinds(k) for h, k in kinds.items()}


def infer_objects(rows: Iterable[dict[str, Any]]) -> dict[str, str | None]:
    """Field name -> inferred kind, from dataset rows (JSON objects)."""
    kinds: dict[str, set[str | None]] = {}
    for row in rows:
        for name, value in row.items():
            kinds.setdefault(name, set()).add(value_kind(value))
    return {n: merge_kinds(k) for n, k in kinds.items()}


def conform(value: Any, kind: str | None) -> Any:
    """Fit a cell to its column's type where that is lossless; else leave it."""
    if value is None:
        return None
    if kind == "string" and not isinstance(value, str):
        return json.dumps(value) if isinstance(value, list | dict) else _scalar_text(value)
    if kind == "number" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    if kind == "boolean" and not isinstance(value, bool):
        # What the SDK's conformance did to a boolean-only property (nonzero is true).
        return value != 0
    return value


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
