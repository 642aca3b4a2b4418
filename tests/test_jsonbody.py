"""The one incremental JSON parser (core.jsonbody): items as they arrive, whatever the chunk
boundaries; a cut body is broken (read again), a wrong-shaped one is an error naming it."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tap_dataplatforms.core.jsonbody import (
    ITEM,
    MEMBER,
    BrokenBody,
    WrongShape,
    iter_array,
    iter_body,
)

WHERE = "Dexi: GET executions/e1/result"
BODY = {
    "headers": ["a", "b", "c"],
    "rows": [[1, "x, ] y", 2.5], [12345, "ü \\u00fc €𝄞", None], [[1, [2]], {"k": "]"}, True]],
    "totalRows": 3,
}


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def result_events(chunks: list[bytes]) -> list[tuple[str, str, Any]]:
    return list(
        iter_body(
            chunks,
            where=WHERE,
            streamed="rows",
            members=("headers", "totalRows"),
            required=("headers", "rows", "totalRows"),
        )
    )


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 1 << 20])
def test_items_and_members_whatever_the_chunk_boundaries(size: int) -> None:
    data = json.dumps(BODY, ensure_ascii=False, indent=1).encode()
    events = result_events(chunked(data, size))
    assert events[0] == (MEMBER, "headers", ["a", "b", "c"])
    assert [v for k, _, v in events if k == ITEM] == BODY["rows"]
    assert (MEMBER, "totalRows", 3) in events


def test_rows_before_headers_and_a_byte_order_mark() -> None:
    data = b"\xef\xbb\xbf" + json.dumps({"rows": [[1]], "headers": ["a"]}).encode()
    for size in (1, 2, 4, 100):
        events = result_events(chunked(data, size))
        assert sorted(events) == [(ITEM, "rows", [1]), (MEMBER, "headers", ["a"])]


@given(
    st.lists(
        st.dictionaries(
            st.text(max_size=5),
            st.one_of(
                st.none(),
                st.booleans(),
                st.integers(-(2**63) + 1, 2**63 - 1),
                st.text(),
                st.floats(-1e9, 1e9),
            ),
            max_size=4,
        ),
        max_size=8,
    ),
    st.integers(1, 40),
)
@settings(max_examples=60, deadline=None)
def test_a_bare_array_equals_json_loads(rows: list[dict[str, Any]], size: int) -> None:
    data = json.dumps(rows, ensure_ascii=False).encode()
    assert list(iter_array(chunked(data, size), where="InVision: GET t")) == json.loads(data)


def test_a_body_cut_anywhere_is_broken_never_a_unicode_error() -> None:
    """Every prefix of a body full of multi-byte characters, including those that stop
    inside one, is a broken body (read again), not a UnicodeDecodeError or a success."""
    data = json.dumps(BODY, ensure_ascii=False).encode()
    cuts = [n for n in range(1, len(data)) if data[n - 1] >= 0x80]  # inside or after one
    assert any(data[n] & 0xC0 == 0x80 for n in cuts)  # some stop mid-character
    for n in range(1, len(data)):
        with pytest.raises(BrokenBody, match=r"^Dexi: GET executions/e1/result: "):
            result_events(chunked(data[:n], 5))


@pytest.mark.parametrize(
    "data",
    [b'{"rows":[[1,2],[3', b'{"rows":[1 2]}', b'{"rows":[NaN]}', b'{"a":1}x', b'{"x":"\xff"}'],
)
def test_malformed_bodies_are_broken(data: bytes) -> None:
    with pytest.raises(BrokenBody):
        result_events(chunked(data, 3))


@pytest.mark.parametrize(
    ("data", "error", "found"),
    [
        (b"[[1, 2]]", WrongShape, "found a JSON array"),
        (b"{}", WrongShape, "expected an object with 'headers', 'rows' or 'totalRows', found"),
        (b'{"error": "x"}', WrongShape, "found an object with none"),
        (b"", BrokenBody, "found an empty body"),
        (b"  \n", BrokenBody, "found an empty body"),
        (b"<!DOCTYPE html><html><body>Bad gateway</body></html>", BrokenBody, "an HTML page"),
        (b'"ok"', BrokenBody, "found a JSON string"),
    ],
)
def test_wrong_shapes_name_the_endpoint_and_what_was_found(
    data: bytes, error: type[Exception], found: str
) -> None:
    """JSON of another shape fails at once; no JSON at all is broken (read again)."""
    with pytest.raises(error, match=r"^Dexi: GET executions/e1/result: expected ") as info:
        result_events(chunked(data, 4) or [b""])
    assert found in str(info.value)


def test_an_object_where_an_array_is_documented() -> None:
    with pytest.raises(
        WrongShape, match="InVision: GET T: expected a JSON array, found a JSON object"
    ):
        list(iter_array([b'{"rows": []}'], where="InVision: GET T"))


def test_memory_stays_flat_on_a_large_body() -> None:
    row = ["https://example.com/p/00000", "Títle — ünïcode €", 12.5, True, None]

    def body(count: int) -> Iterator[bytes]:
        yield b'{"headers":["a","b","c","d","e"],"rows":['
        line = json.dumps(row, ensure_ascii=False).encode()
        for start in range(0, count, 1000):
            yield b",".join([line] * min(1000, count - start)) + (
                b"," if start + 1000 < count else b""
            )
        yield b'],"totalRows":%d}' % count

    def peak(count: int) -> int:
        tracemalloc.start()
        seen = sum(1 for kind, _, _ in result_events_iter(body(count)) if kind == ITEM)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert seen == count
        return top

    small, large = peak(2_000), peak(40_000)
    assert large < small * 1.5 + 500_000, (small, large)


def result_events_iter(chunks: Iterator[bytes]) -> Iterator[tuple[str, str, Any]]:
    return iter_body(chunks, where=WHERE, streamed="rows", members=("headers", "totalRows"))


def test_hints_are_read_only_near_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from tap_dataplatforms.core import jsonbody

    monkeypatch.setattr(jsonbody, "HINT_BYTES", 64)
    rows = [[n, "x" * 20] for n in range(50)]
    first = json.dumps({"totalRows": 50, "headers": ["a", "b"], "rows": rows}).encode()
    last = json.dumps({"headers": ["a", "b"], "rows": rows, "totalRows": 50}).encode()

    def members(data: bytes) -> dict[str, Any]:
        events = iter_body(
            chunked(data, 16),
            where=WHERE,
            streamed="rows",
            members=("headers",),
            hints=("totalRows",),
        )
        return {name: value for kind, name, value in events if kind == MEMBER}

    assert members(first) == {"totalRows": 50, "headers": ["a", "b"]}
    assert members(last) == {"headers": ["a", "b"]}  # not parsed twice for a count


# -- runs of rows decoded by msgspec: the same events and errors as yajl alone -------------

CELLS = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 70), max_value=1 << 70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.sampled_from(list('ab ,:[]{}"\\/\n\t€𝄞ü\u2028')), max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)
ROWS = st.lists(
    st.lists(CELLS, max_size=5) | st.dictionaries(st.text(max_size=3), CELLS), max_size=40
)


def events_or_error(quick: bool, chunks: list[bytes]) -> tuple[Any, Any]:
    """(the items in the order given, the members), or (the error, its message); where
    members come among items, or among each other, within a chunk is not compared."""
    from tap_dataplatforms.core import jsonbody

    jsonbody.QUICK_ROWS = quick
    try:
        events = list(
            iter_body(
                chunks,
                where=WHERE,
                streamed="rows",
                members=("headers",),
                hints=("totalRows",),
                required=("headers", "rows", "totalRows"),
            )
        )
        return (
            [v for kind, _, v in events if kind == ITEM],
            sorted((name, json.dumps(v)) for kind, name, v in events if kind == MEMBER),
        )
    except (BrokenBody, WrongShape) as exc:
        return type(exc).__name__, str(exc)
    finally:
        jsonbody.QUICK_ROWS = True


@given(
    rows=ROWS,
    layout=st.sampled_from(["headers-first", "rows-first", "nested-before", "rows-twice"]),
    separators=st.sampled_from([(",", ":"), (", ", ": "), (",\n ", " : ")]),
    size=st.integers(min_value=1, max_value=400),
    cut=st.none() | st.integers(min_value=0, max_value=4000),
    damage=st.none() | st.tuples(st.integers(min_value=0, max_value=4000), st.binary(max_size=2)),
)
@settings(max_examples=400, deadline=None)
def test_quick_rows_give_what_yajl_alone_gives(
    rows: list[Any],
    layout: str,
    separators: tuple[str, str],
    size: int,
    cut: int | None,
    damage: tuple[int, bytes] | None,
) -> None:
    if layout == "headers-first":
        body: dict[str, Any] = {"headers": ["a", "b"], "rows": rows, "totalRows": len(rows)}
    elif layout == "rows-first":
        body = {"rows": rows, "totalRows": len(rows), "headers": ["a"]}
    else:
        body = {"x": {"rows": [[1], [2]], "y": '"rows": ['}, "headers": ["a"], "rows": rows}
    data = json.dumps(body, ensure_ascii=False, separators=separators).encode()
    if layout == "rows-twice":
        data = data[:-1] + b', "rows": [[7, 8], [9]]}'
    if cut is not None:
        data = data[:cut]
    if damage is not None:
        at, junk = damage
        data = data[:at] + junk + data[at + len(junk) :]
    chunks = chunked(data, size) if data else []
    assert events_or_error(True, chunks) == events_or_error(False, chunks)


def test_a_large_body_is_decoded_in_runs_with_the_same_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tap_dataplatforms.core import jsonbody

    rows = [
        [f"https://x/{n}", f"Item {n}, ]}}[{{", n * 1.5, n, n % 2 == 0, None] for n in range(20_000)
    ]
    rows[7000][3] = 1 << 64  # yajl refuses it: the body is broken, with or without runs
    data = json.dumps({"headers": list("abcdef"), "rows": rows, "totalRows": 20_000}).encode()
    runs = []
    decode = jsonbody._DECODE

    def counted(piece: bytes) -> Any:
        runs.append(len(piece))
        return decode(piece)

    monkeypatch.setattr(jsonbody, "_DECODE", counted)
    chunks = chunked(data, 1 << 16)
    assert events_or_error(True, chunks) == events_or_error(False, chunks)
    rows[7000][3] = 5
    data = json.dumps({"headers": list("abcdef"), "rows": rows, "totalRows": 20_000}).encode()
    runs.clear()
    quick = events_or_error(True, chunked(data, 1 << 16))
    assert len(runs) > 10  # decoded in runs, not by yajl
    assert quick == events_or_error(False, chunked(data, 1 << 16))
    assert quick[0] == rows
