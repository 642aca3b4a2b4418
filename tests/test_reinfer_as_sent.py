"""Re:infer comments passed on as sent (reinfer/comments.py) are the records the decoding
path makes of them: on generated pages in every serialisation, through the whole record
loop, and never when the catalog asks for something else."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import orjson
import pytest
import requests
import requests_mock as rm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tap_dataplatforms.core.records import EncodedRecords, MessageWriter, split_at_states
from tap_dataplatforms.reinfer import comments
from tap_dataplatforms.reinfer.streams import CommentsStream
from tests.helpers import FakeClock, make_tap
from tests.test_reinfer_lean_path import both_loops
from tests.test_reinfer_sandbox import COMMENTS, only, run_ordered
from tests.test_reinfer_unit import DIRECT, mock_base
from tests.test_reinfer_unit import config as unit_config

CONTEXT = {"source_id": "src-1"}
UTC = dt.timezone.utc

# -- generated comments --------------------------------------------------------------------

MOMENTS = st.datetimes(
    min_value=dt.datetime(2001, 1, 1), max_value=dt.datetime(2030, 12, 31), timezones=st.just(UTC)
)
#: Every form a comment timestamp may take: as the tap writes it (with and without a
#: fraction), a zero fraction, Z, another offset, an epoch number, null.
STAMPS = st.one_of(
    MOMENTS.filter(lambda m: m.microsecond != 0).map(dt.datetime.isoformat),
    MOMENTS.map(lambda m: m.replace(microsecond=0).isoformat()),
    MOMENTS.map(lambda m: m.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00")),
    MOMENTS.map(lambda m: m.isoformat().replace("+00:00", "Z")),
    MOMENTS.map(lambda m: m.astimezone(dt.timezone(dt.timedelta(hours=2))).isoformat()),
    MOMENTS.map(lambda m: int(m.timestamp() * 1000)),
    st.none(),
)
TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)) | st.sampled_from('"\\/\n\t\u2028é😀'),
    max_size=12,
)
SCALARS = st.one_of(
    TEXT,
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)


@st.composite
def comment(draw: st.DrawFn) -> dict[str, Any]:
    stamp = draw(STAMPS)
    same = st.just(stamp)
    body: dict[str, Any] = {"id": draw(TEXT), "uid": draw(TEXT)}
    if draw(st.booleans()) or stamp is not None:
        body["timestamp"] = stamp
    messages = st.lists(
        st.fixed_dictionaries(
            {"body": st.fixed_dictionaries({"text": TEXT})},
            optional={"sent_at": same | STAMPS, "to": st.lists(TEXT, max_size=2)},
        ),
        max_size=3,
    )
    body["messages"] = draw(messages | st.sampled_from(["not a list", [1, "two"], None]))
    # Properties that hold the very text of a timestamp, as a value or as a key: a
    # rewrite in the text must not touch them.
    properties = draw(st.dictionaries(TEXT, SCALARS, max_size=3))
    if stamp is not None and draw(st.booleans()):
        properties[draw(st.sampled_from(["string:Seen", str(stamp)]))] = draw(same | SCALARS)
    body["user_properties"] = properties
    optional = {
        "created_at": same | STAMPS,
        "has_annotations": st.sampled_from([True, False, None, "true", "no", 1, 0]),
        "thread_id": TEXT,
        # members the stream sets itself: sent by the platform only by surprise
        "source_id": st.sampled_from(["src-1", "elsewhere"]),
        "project": st.sampled_from(["acme", None]),
        "source_name": TEXT,
        "x_feature": st.dictionaries(TEXT, SCALARS, max_size=2),
    }
    for name, values in optional.items():
        if draw(st.integers(0, 3)) == 0:
            body[name] = draw(values)
    return body


SERIALISERS = {
    "compact": lambda page: orjson.dumps(page),
    "ascii escapes": lambda page: json.dumps(page, ensure_ascii=True).encode(),
    "spaced": lambda page: json.dumps(page, ensure_ascii=False, separators=(" , ", " : ")).encode(),
    "indented": lambda page: json.dumps(page, ensure_ascii=False, indent=1).encode(),
}


def page_body(items: list[dict[str, Any]], form: str) -> bytes:
    return SERIALISERS[form]({"status": "ok", "comments": items, "continuation": None})


# -- both paths ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stream() -> CommentsStream:
    tap = make_tap(unit_config(), clock=FakeClock())
    found = tap.streams[COMMENTS]
    assert isinstance(found, CommentsStream)
    found.source_names.learn("src-1", ("acme", "inbox"))
    return found


def finished(stream: CommentsStream, record: dict[str, Any]) -> dict[str, Any] | None:
    """What the record loop makes of a decoded comment: post-processed, conformed, and
    read back from the JSON the writer would write."""
    out = stream.post_process(record, dict(CONTEXT))
    _, conformer, _ = stream._record_path()
    stream._fit(out, False, conformer)
    return json.loads(orjson.dumps(out))


def read(content: bytes) -> tuple[Any, list[Any] | None]:
    response = requests.Response()
    response.status_code = 200
    response._content = content
    (body, raws), _ = comments.read_page(response)
    return body, raws


def both_paths(
    stream: CommentsStream, content: bytes
) -> tuple[list[Any], list[Any], list[tuple[str, str]]]:
    """(records of the decoding path, records as page_records gives them, (value,
    timestamp) of each record passed on as sent)."""
    expected = [finished(stream, c) for c in comments.decode_page(content)]
    stream.encoded_records_wanted = True
    try:
        suffix = stream._added_members(dict(CONTEXT))
    finally:
        stream.encoded_records_wanted = False
    assert suffix is not None
    body, raws = read(content)
    actual: list[Any] = []
    passed: list[tuple[str, str]] = []
    for item in comments.page_records(body, raws, suffix, stream._order_check(CONTEXT)):
        if isinstance(item, EncodedRecords):
            for text, value in zip(item.texts, item.values, strict=True):
                line = bytes(text) + item.suffix
                assert b"\n" not in line
                line.decode("utf-8")
                record = json.loads(line)
                actual.append(record)
                passed.append((value, record["timestamp"]))
        else:
            actual.append(finished(stream, item))
    return expected, actual, passed


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(comment(), max_size=6), form=st.sampled_from(sorted(SERIALISERS)))
def test_a_page_passed_on_as_sent_gives_the_records_decoding_gives(
    stream: CommentsStream, items: list[dict[str, Any]], form: str
) -> None:
    expected, actual, passed = both_paths(stream, page_body(items, form))
    assert actual == expected
    # the bookmark each passed record carries is its written timestamp
    assert all(value == stamp for value, stamp in passed)


def plain(n: int, stamp: str) -> dict[str, Any]:
    return {
        "id": f"msg-{n}",
        "uid": f"f00.msg-{n}",
        "timestamp": stamp,
        "messages": [{"body": {"text": 'Привет "x" \\ y'}, "sent_at": stamp}],
        "user_properties": {"number:Order Value": 12.50},
        "created_at": "2024-05-01T10:02:11.482910+00:00",
        "has_annotations": False,
    }


def test_comments_as_the_platform_writes_them_are_all_passed_on(stream: CommentsStream) -> None:
    items = [plain(n, f"2024-05-01T10:00:0{n}.00000{n + 1}+00:00") for n in range(5)]
    content = page_body(items, "compact")
    body, raws = read(content)
    out = list(comments.page_records(body, raws, b"}", lambda stamp: None))
    assert [type(item) for item in out] == [EncodedRecords]
    assert len(out[0]) == 5
    expected, actual, passed = both_paths(stream, content)
    assert actual == expected
    assert len(passed) == 5
    # the text is the platform's own: the number keeps its written form
    assert b'"number:Order Value":12.5' in bytes(out[0].texts[0])


def test_a_comment_only_decoding_can_settle_splits_the_run(stream: CommentsStream) -> None:
    items = [plain(n, f"2024-05-01T10:00:0{n}.00000{n + 1}+00:00") for n in range(4)]
    items[1]["has_annotations"] = "false"  # conformance makes it a boolean
    items[2]["timestamp"] = "2024-05-01T12:00:02+02:00"  # rewritten in the text
    items[2]["messages"][0]["sent_at"] = "2024-05-01T12:00:02+02:00"
    content = page_body(items, "compact")
    body, raws = read(content)
    out = list(comments.page_records(body, raws, b"}", lambda stamp: None))
    assert [type(item).__name__ for item in out] == ["EncodedRecords", "dict", "EncodedRecords"]
    assert [len(item) for item in out] == [1, len(items[1]), 2]
    assert out[2].values[0] == "2024-05-01T10:00:02+00:00"
    expected, actual, _ = both_paths(stream, content)
    assert actual == expected


@pytest.mark.parametrize("form", ["ascii escapes", "indented"])
def test_pages_not_on_one_line_or_with_surrogate_escapes_are_decoded(
    stream: CommentsStream, form: str
) -> None:
    items = [plain(0, "2024-05-01T10:00:00.000001+00:00")]
    items[0]["messages"][0]["body"]["text"] = "😀 ok"
    content = page_body(items, form)
    body, raws = read(content)
    assert not comments.passable(body)
    out = list(comments.page_records(body, raws, b"}", lambda stamp: None))
    assert [type(item) for item in out] == [dict]
    expected, actual, _ = both_paths(stream, content)
    assert actual == expected


def test_a_page_that_is_not_utf8_is_left_to_the_decoding_path_which_refuses_it(
    stream: CommentsStream,
) -> None:
    content = page_body([plain(0, "2024-05-01T10:00:00.000001+00:00")], "compact")
    broken = content.replace("Привет".encode(), b"\xff\xfe")
    body, raws = read(broken)
    assert raws is not None  # the worker's scan does not look inside strings
    assert not comments.passable(body)
    with pytest.raises(UnicodeDecodeError):
        list(comments.page_records(body, raws, b"}", lambda stamp: None))


# -- the record loop --------------------------------------------------------------------------


def test_states_fall_between_the_records_they_cover() -> None:
    records = EncodedRecords([b"a", b"b", b"c", b"d", b"e"], b"}", ["1", "2", "3", "4", "5"])
    parts = split_at_states(records, index=254, frequency=256)
    assert [p.texts for p in parts] == [[b"a", b"b"], [b"c", b"d", b"e"]]
    assert [p.values for p in parts] == [["1", "2"], ["3", "4", "5"]]
    assert split_at_states(records, index=0, frequency=256) == [records]
    parts = split_at_states(records, index=0, frequency=2)
    assert [p.values[-1] for p in parts] == ["2", "4", "5"]


def test_the_writer_writes_encoded_records_as_it_writes_records(
    capsys: pytest.CaptureFixture[str],
) -> None:
    writer = MessageWriter()
    write = writer.record_writer("s", 7)
    write({"id": 1, "v": "x"})
    write(EncodedRecords([b'{"id":2', memoryview(b'{"id":3,"v":"y"')], b',"a":null}', ["", ""]))
    writer.flush()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [m["record"] for m in lines] == [
        {"id": 1, "v": "x"},
        {"id": 2, "a": None},
        {"id": 3, "v": "y", "a": None},
    ]
    assert {(m["type"], m["stream"], m["version"]) for m in lines} == {("RECORD", "s", 7)}
    assert all("time_extracted" in m for m in lines)
    assert writer.records["s"] == 3


def test_records_written_together_are_the_lines_written_one_by_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    moment = dt.datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    batch = [{"id": 1}, {"id": 2, "at": moment}, {"id": 3, "big": 2**70}]
    writer = MessageWriter()
    write = writer.record_writer("s", None)
    for record in batch:
        write(record)
    write(batch)  # orjson declines the datetime and the big integer: msgspec writes them
    writer.flush()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    one_by_one, together = lines[:3], lines[3:]
    assert [m["record"] for m in together] == [m["record"] for m in one_by_one]
    assert together[1]["record"]["at"] == "2024-05-01T10:00:00Z"
    assert together[2]["record"]["big"] == 2**70
    assert writer.records["s"] == 6


def stamp(hour: int, n: int) -> str:
    return f"2024-05-01T{hour}:{n // 60:02d}:{n % 60:02d}.00000{n % 9 + 1}+00:00"


PAGES = {
    "inbox": [
        [plain(n, stamp(10, n)) for n in range(300)],
        [
            {**plain(300, "2024-05-02T00:00:00.000000+00:00"), "has_annotations": "yes"},
            plain(301, "2024-05-02T00:00:01Z"),
            {**plain(302, "2024-05-02T00:00:02.000003+00:00"), "source_id": "other"},
            plain(303, "2024-05-01T00:00:00.000001+00:00"),  # out of order
        ],
    ],
    "calls": [
        [plain(n, f"2024-06-01T00:00:{n % 60:02d}.00000{n % 9 + 1}+00:00") for n in range(40)]
    ],
}


def mock_pages(m: rm.Mocker, forms: tuple[str, ...]) -> None:
    mock_base(m)
    for name, pages in PAGES.items():
        answers = []
        for index, items in enumerate(pages):
            last = index == len(pages) - 1
            body = {
                "status": "ok",
                "comments": items,
                "continuation": None if last else f"c{index}",
            }
            answers.append({"content": SERIALISERS[forms[index % len(forms)]](body)})
        m.get(f"{DIRECT}/api/_private/sources/acme/{name}/comments", answers * 2)


def count_passed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    passed = [0]
    original = comments.page_as_sent

    def counted(*args: Any, **kwargs: Any) -> Any:
        for item in original(*args, **kwargs):
            if isinstance(item, EncodedRecords):
                passed[0] += len(item)
            yield item

    monkeypatch.setattr(comments, "page_as_sent", counted)
    return passed


@pytest.mark.parametrize("forms", [("compact",), ("indented", "compact")])
def test_the_lean_loop_passing_comments_on_writes_what_the_sdk_loop_writes(
    requests_mock: rm.Mocker,
    monkeypatch: pytest.MonkeyPatch,
    loops: dict[str, int],
    forms: tuple[str, ...],
) -> None:
    mock_pages(requests_mock, forms)
    passed = count_passed(monkeypatch)

    def run() -> list[dict[str, Any]]:
        tap = only(make_tap(unit_config(), clock=FakeClock()), "reinfer_sources", COMMENTS)
        return run_ordered(tap)

    standard, lean = both_loops(monkeypatch, run, loops)
    assert lean == standard
    records = [m for m in lean if m["type"] == "RECORD" and m["stream"] == COMMENTS]
    assert len(records) == 344
    # Compact pages are passed on, but for the two comments only decoding settles (text
    # for a boolean, a source id of their own); an indented page is decoded whole.
    assert passed[0] == (300 + 2 + 40 if forms == ("compact",) else 2)
    assert [m["record"]["source_id"] for m in records].count("other") == 0


def deselected_catalog(tap: Any, dropped: str) -> dict[str, Any]:
    catalog = tap.catalog_dict
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            if item["breadcrumb"] == []:
                item["metadata"]["selected"] = entry["tap_stream_id"] in (
                    "reinfer_sources",
                    COMMENTS,
                )
            elif entry["tap_stream_id"] == COMMENTS and item["breadcrumb"] == [
                "properties",
                dropped,
            ]:
                item["metadata"]["selected"] = False
    return catalog


def test_a_deselected_property_or_another_schema_turns_passing_on_off(
    requests_mock: rm.Mocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    mock_pages(requests_mock, ("compact",))
    passed = count_passed(monkeypatch)
    tap = make_tap(unit_config(), clock=FakeClock())
    catalog = deselected_catalog(tap, "uid")
    out = run_ordered(make_tap(unit_config(), clock=FakeClock(), catalog=catalog))
    records = [m["record"] for m in out if m["type"] == "RECORD" and m["stream"] == COMMENTS]
    assert len(records) == 344
    assert all("uid" not in r for r in records)
    assert passed[0] == 0

    # A catalog whose schema differs from the stream's own: conformance is not the one
    # passing on was checked against, so the decoding path takes every comment.
    tap = make_tap(unit_config(), clock=FakeClock())
    catalog = deselected_catalog(tap, "nothing")
    for entry in catalog["streams"]:
        if entry["tap_stream_id"] == COMMENTS:
            entry["schema"]["properties"]["has_annotations"] = {"type": ["string", "null"]}
    out = run_ordered(make_tap(unit_config(), clock=FakeClock(), catalog=catalog))
    assert passed[0] == 0
    # and records are conformed to the catalog's schema, as the SDK conforms them: text
    # stays text where the catalog declares text (the stream's own schema: a boolean)
    records = [m["record"] for m in out if m["type"] == "RECORD" and m["stream"] == COMMENTS]
    assert len(records) == 344
    assert {r["has_annotations"] for r in records} == {False, "yes"}
