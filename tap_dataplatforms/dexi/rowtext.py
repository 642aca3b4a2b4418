"""Result rows encoded as records a run at a time, without a dict per row.

A result row is an array of cells in the order of the result's ``headers``; its record is
an object of the same cells under the header names, then ``_row_index``, ``_execution_id``
and ``_run_id`` (``ResultsStream``). Where every cell of a run of rows is already of its
column's type (the usual case: ``dexi.streams._FITS``), nothing is left to fit, and the run
is encoded here in C: msgspec checks the run against a row type (one fixed-length tuple
type per result's columns), builds one struct per row whose fields are renamed to the
header names, and encodes each struct as the record's JSON object. A run with any cell
that is not of its column's type is declined (``None``) and takes the record-by-record
path, which fits such cells (``columns.conform``). The values are those the record path
would write; only msgspec's number forms differ from orjson's in the text (``1e16`` for
``1e+16``), not in the value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import repeat
from typing import Any

import msgspec

#: What a cell must be to be written as it is, per column kind; what is missing here
#: (another kind) is never encoded here.
_CELL_TYPES: dict[str | None, Any] = {
    "string": str | None,
    None: str | None,
    "integer": int | None,
    "number": int | float | None,
    "boolean": bool | None,
    "array": list | None,
    "object": dict | None,
}
#: The members a record has after its cells, in this order.
ADDED = ("_row_index", "_execution_id", "_run_id")


class RowEncoder:
    """Encodes runs of one result's rows (see the module's text)."""

    def __init__(self, headers: Sequence[str], kinds: Sequence[str | None]) -> None:
        cells = [_CELL_TYPES[kind] for kind in kinds]
        self.row_type: Any = list[tuple[tuple(cells)]]  # type: ignore[misc]
        names = [f"c{position}" for position in range(len(headers))]
        fields: list[tuple[str, Any]] = [(name, Any) for name in names]
        fields += [("row_index", int), ("execution_id", Any), ("run_id", Any)]
        rename = dict(zip(names, headers, strict=True))
        rename.update(zip(("row_index", "execution_id", "run_id"), ADDED, strict=True))
        # gc=False: a record's cells are decoded JSON, which holds no reference cycles.
        self.record = msgspec.defstruct("ResultRecord", fields, rename=rename, gc=False)
        self.encode_one: Callable[[Any], bytes] = msgspec.json.Encoder().encode

    @classmethod
    def for_columns(cls, headers: Sequence[str], kinds: Sequence[str | None]) -> RowEncoder | None:
        """An encoder for rows of ``headers`` (each kept, in order) typed ``kinds``, or
        ``None`` where runs cannot be encoded here: no columns, a header twice or named as
        an added member, a kind this module does not know, a header msgspec does not take
        as a field's name (one with a quote, a backslash or a control character)."""
        if not headers or len(set(headers)) != len(headers) or set(headers) & set(ADDED):
            return None
        if any(kind not in _CELL_TYPES for kind in kinds):
            return None
        try:
            return cls(headers, kinds)
        except (TypeError, ValueError):
            return None

    def encode(
        self, rows: list[Any], first_index: int, execution_id: Any, run_id: Any
    ) -> list[bytes] | None:
        """The records of ``rows`` (numbered from ``first_index``) as JSON objects, or
        ``None`` if any row is not an array of exactly the columns' types."""
        try:
            typed = msgspec.convert(rows, self.row_type)
        except msgspec.ValidationError:
            return None
        count = len(typed)
        records = map(
            self.record,
            *zip(*typed, strict=True),
            range(first_index, first_index + count),
            repeat(execution_id, count),
            repeat(run_id, count),
        )
        return list(map(self.encode_one, records))
