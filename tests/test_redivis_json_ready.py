"""Redivis rows leave Arrow already JSON-ready: the SDK's conformance no longer runs on them."""

from __future__ import annotations

import math

import pyarrow as pa

from tap_dataplatforms.redivis.rows import TableRowsStream, to_json_ready


def test_non_finite_floats_become_null_as_conformance_made_them() -> None:
    column = pa.array([1.5, math.nan, math.inf, -math.inf, None, 0.0])
    assert to_json_ready(column, "float").to_pylist() == [1.5, None, None, None, None, 0.0]
    assert to_json_ready(pa.array([None, None], pa.float64()), "float").to_pylist() == [
        None,
        None,
    ]
    as_text = pa.array(["2.5", "nan"])
    assert to_json_ready(as_text, "float").to_pylist() == [2.5, None]


def test_table_rows_skip_the_sdks_conformance() -> None:
    assert TableRowsStream.RECORDS_FIT_SCHEMA is True
