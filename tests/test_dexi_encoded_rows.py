"""Runs of Dexi result rows encoded a run at a time (``dexi/rowtext.py``) are the records
the record-by-record path makes: the same members, in the same order, with the same
values, numbered the same, whatever the rows hold and wherever a read starts again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import requests_mock as rm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tap_dataplatforms.core.http import PlatformStream
from tap_dataplatforms.core.records import EncodedRecords, encode_record
from tap_dataplatforms.dexi.rowtext import RowEncoder
from tap_dataplatforms.dexi.streams import ResultsStream
from tests.helpers import FakeClock, make_tap, run_sync
from tests.test_dexi_unit import BASE, MIN, T0, Account, config, execution

CONTEXT = {"run_id": "run-1", "execution_id": "ex-1"}
KINDS = ["string", None, "integer", "number", "boolean", "array", "object"]


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PlatformStream, "retry_base_seconds", 0.001)


class Body:
    """A response whose body comes in the given pieces."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    def iter_content(self, size: int) -> Iterator[bytes]:
        return iter(self.pieces)


_STREAMS: list[ResultsStream] = []


def results_stream(columns: dict[str, str | None]) -> ResultsStream:
    """A results stream of these columns. One is made (a tap's discovery costs half a
    second) and given each example's columns: reading rows uses nothing else of them."""
    if not _STREAMS:
        with rm.Mocker() as mock:  # the tap's discovery: one run, no executions
            Account(mock, [])
            tap = make_tap(config(), clock=FakeClock())
            _STREAMS.append(ResultsStream(tap, name="dexi_results__t", run_id="run-1", columns={}))
    stream = _STREAMS[0]
    stream.columns = columns
    return stream


def read(
    stream: ResultsStream, pieces: list[bytes], skip: int, encoded: bool
) -> tuple[list[list[tuple[str, Any]]], int]:
    """The records of a body (as their members, in order) and how many came encoded."""
    ids = ("ex-1", "run-1") if encoded else None
    events = stream._events("ex-1", Body(pieces), runs=encoded)  # type: ignore[arg-type]
    records: list[list[tuple[str, Any]]] = []
    passed = 0
    for item in stream.rows_of_events(events, None, skip=skip, ids=ids):
        if type(item) is EncodedRecords:
            assert item.suffix == b""
            passed += len(item)
            records += [list(json.loads(bytes(text)).items()) for text in item.texts]
        else:
            record = stream.post_process(item, CONTEXT)
            records.append(list(json.loads(encode_record(record)).items()))
    return records, passed


def chunks(body: bytes, size: int) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63) + 1, 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
CELLS = st.one_of(
    SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(st.text(max_size=3), SCALARS)
)
FITTING = {
    "string": st.text(max_size=12),
    None: st.text(max_size=12),
    "integer": st.integers(-(2**63) + 1, 2**63 - 1),
    "number": st.one_of(
        st.integers(-(10**12), 10**12), st.floats(allow_nan=False, allow_infinity=False)
    ),
    "boolean": st.booleans(),
    "array": st.lists(SCALARS, max_size=3),
    "object": st.dictionaries(st.text(max_size=3), SCALARS, max_size=3),
}


@st.composite
def result(draw: st.DrawFn) -> tuple[dict[str, str | None], bytes, int, int]:
    """Columns, a result body, a piece size and how many rows a read passes over."""
    names = st.sampled_from(["url", "Größe", "qty", "a b", "x", "", "ok", '"q"', "_row_index"])
    headers = draw(st.lists(names, min_size=1, max_size=5))
    columns = {h: draw(st.sampled_from(KINDS)) for h in headers}
    if draw(st.booleans()):  # a column the catalog has that this result lacks
        columns["extra"] = "string"
    if draw(st.integers(0, 4)) == 0 and headers:  # a result column not in the catalog
        columns.pop(headers[-1], None)

    def row() -> Any:
        shape = draw(st.integers(0, 9))
        if shape == 0:  # another length
            return draw(st.lists(CELLS, max_size=len(headers) + 1))
        if shape == 1:  # an object
            return {h: draw(CELLS) for h in headers}
        cells = []
        for header in headers:
            fits = draw(st.integers(0, 7)) > 0
            kind = columns.get(header, "string")
            cells.append(draw(st.one_of(st.none(), FITTING[kind])) if fits else draw(CELLS))
        return cells

    rows = [row() for _ in range(draw(st.integers(0, 60)))]
    form = draw(st.sampled_from(["headers first", "rows first", "indented"]))
    if form == "rows first":
        body = b'{"rows":%s,"totalRows":%d,"headers":%s}' % (
            orjson.dumps(rows),
            len(rows),
            orjson.dumps(headers),
        )
    else:
        value = {"headers": headers, "rows": rows, "totalRows": len(rows)}
        indent = 2 if form == "indented" else None
        body = json.dumps(value, indent=indent, ensure_ascii=draw(st.booleans())).encode()
    return columns, body, draw(st.integers(1, 400)), draw(st.integers(0, len(rows) + 1))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(result())
def test_runs_encoded_are_the_records_made_one_by_one(
    case: tuple[dict[str, str | None], bytes, int, int],
) -> None:
    columns, body, size, skip = case
    stream = results_stream(columns)
    pieces = chunks(body, size)
    one_by_one, none = read(stream, pieces, skip, encoded=False)
    encoded, _ = read(stream, pieces, skip, encoded=True)
    assert none == 0
    assert encoded == one_by_one


def clean_body(rows: int) -> tuple[list[str], bytes]:
    headers = ["url", "title", "price", "qty", "ok", "tags", "meta"]
    values = [
        [f"https://x/{n}", f"Prïs € {n} 𝄞", n * 1.5 if n % 2 else n, n, n % 3 == 0, [n], {"n": n}]
        for n in range(rows)
    ]
    return headers, orjson.dumps({"headers": headers, "rows": values, "totalRows": rows})


COLUMNS: dict[str, str | None] = {
    "url": "string",
    "title": "string",
    "price": "number",
    "qty": "integer",
    "ok": "boolean",
    "tags": "array",
    "meta": "object",
}


def test_a_clean_result_comes_encoded_and_a_run_with_a_cell_to_fit_does_not() -> None:
    stream = results_stream(COLUMNS)
    _, body = clean_body(3000)
    records, passed = read(stream, chunks(body, 1 << 14), 0, encoded=True)
    # all but the rows of the body's last piece, which its parser reads (jsonbody)
    assert 2800 < passed <= 3000
    assert [dict(r)["_row_index"] for r in records] == list(range(3000))
    assert records == read(stream, chunks(body, 1 << 14), 0, encoded=False)[0]

    # one cell of another type (text in the integer column): its run goes one by one and
    # the cell is fitted as before; the other runs still come encoded
    row = [f"https://x/{2000}", f"Prïs € {2000} 𝄞", 2000, 2000]
    odd = body.replace(orjson.dumps(row)[1:-1], orjson.dumps([*row[:3], "2000"])[1:-1])
    assert odd != body
    records, passed = read(stream, chunks(odd, 1 << 14), 0, encoded=True)
    assert 2500 < passed < 2900
    assert dict(records[2000])["qty"] == "2000"  # as the one-by-one path leaves it
    assert records == read(stream, chunks(odd, 1 << 14), 0, encoded=False)[0]


def test_headers_msgspec_cannot_name_or_that_repeat_are_never_encoded() -> None:
    assert RowEncoder.for_columns(['say "hi"'], ["string"]) is None
    assert RowEncoder.for_columns(["a", "a"], ["string", "string"]) is None
    assert RowEncoder.for_columns(["_row_index"], ["integer"]) is None
    assert RowEncoder.for_columns([], []) is None
    assert RowEncoder.for_columns(["a"], ["date"]) is None
    encoder = RowEncoder.for_columns(["a"], ["number"])
    assert encoder is not None
    assert encoder.encode([[True]], 0, "e", "r") is None  # a boolean is no number here
    assert encoder.encode([[1], [2.5]], 7, "e", "r") == [
        b'{"a":1,"_row_index":7,"_execution_id":"e","_run_id":"r"}',
        b'{"a":2.5,"_row_index":8,"_execution_id":"e","_run_id":"r"}',
    ]


def counted_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Rows encoded per run, from now on."""
    counts: list[int] = []
    encode = RowEncoder.encode

    def counting(self: RowEncoder, rows: list[Any], *args: Any) -> list[bytes] | None:
        texts = encode(self, rows, *args)
        if texts is not None:
            counts.append(len(texts))
        return texts

    monkeypatch.setattr(RowEncoder, "encode", counting)
    return counts


def test_a_result_cut_off_after_encoded_runs_is_read_again_without_repeating_rows(
    requests_mock: rm.Mocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers, body = clean_body(20_000)
    rows = json.loads(body)["rows"]
    account = Account(requests_mock, [execution(1, T0, T0 + MIN)])
    account.result("ex-1", headers, rows[:50])  # what discovery reads
    tap = make_tap(config(), clock=FakeClock())
    tap.streams  # noqa: B018 - discovery
    counts = counted_runs(monkeypatch)
    # cut inside a multi-byte character, well after the first runs
    cut = body.index("€".encode(), len(body) * 2 // 3) + 1
    requests_mock.get(BASE + "executions/ex-1/result", [{"content": body[:cut]}, {"content": body}])
    records = run_sync(tap).records["dexi_results__price_watch"]
    assert [r["_row_index"] for r in records] == list(range(20_000))
    assert [r["url"] for r in records] == [row[0] for row in rows]
    assert [r["price"] for r in records] == [row[2] for row in rows]
    assert {r["_execution_id"] for r in records} == {"ex-1"}
    # runs came encoded in both reads (the second's first ones cut where it starts again)
    assert len(counts) >= 5
    assert sum(counts) > 15_000


def test_no_run_is_encoded_while_file_cells_are_collected_or_a_property_is_deselected(
    requests_mock: rm.Mocker, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    headers, body = clean_body(20_000)
    rows = json.loads(body)["rows"]
    account = Account(requests_mock, [execution(1, T0, T0 + MIN)])
    account.result("ex-1", headers, rows)
    counts = counted_runs(monkeypatch)
    tap = make_tap(config(), clock=FakeClock())
    catalog = tap.catalog_dict
    for stream in catalog["streams"]:
        if stream["tap_stream_id"] == "dexi_results__price_watch":
            for entry in stream["metadata"]:
                if entry["breadcrumb"] == ["properties", "meta"]:
                    entry["metadata"]["selected"] = False
    deselected = run_sync(make_tap(config(), clock=FakeClock(), catalog=catalog))
    records = deselected.records["dexi_results__price_watch"]
    assert len(records) == 20_000
    assert all("meta" not in r for r in records)
    assert counts == []
    files = config(download_files=True, files_dir=str(tmp_path))
    with_files = run_sync(make_tap(files, clock=FakeClock()))
    assert len(with_files.records["dexi_results__price_watch"]) == 20_000
    assert counts == []
    everything = run_sync(make_tap(config(), clock=FakeClock()))
    assert everything.records == with_files.records
    assert sum(counts) > 15_000
