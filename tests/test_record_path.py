"""The cheap record path: the buffered writer, compiled conformance."""

from __future__ import annotations

import copy
import datetime
import io
import json
import logging
import math
from typing import Any

import pytest
import requests
from singer_sdk.helpers._typing import conform_record_data_types
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.singerlib import RecordMessage, StateMessage

from tap_dataplatforms.core import records
from tap_dataplatforms.core.http import response_json
from tap_dataplatforms.core.records import MessageWriter, compile_conformer
from tap_dataplatforms.core.timestamps import format_rfc3339, parse_datetime, to_rfc3339

# -- writer -------------------------------------------------------------------------------


def binary_stdout(monkeypatch: pytest.MonkeyPatch) -> io.BytesIO:
    """Stand a binary stdout in for the writer's and return what it receives (set inside
    each test: pytest's capture puts its own stdout back between setup and call)."""
    buffer = io.BytesIO()

    class Stdout:
        pass

    Stdout.buffer = buffer  # type: ignore[attr-defined]
    monkeypatch.setattr(records.sys, "stdout", Stdout)
    return buffer


def test_records_wait_in_the_buffer_until_a_state_message(monkeypatch: pytest.MonkeyPatch) -> None:
    out = binary_stdout(monkeypatch)
    writer = MessageWriter()
    writer.write_message(RecordMessage(stream="s", record={"a": 1}))
    writer.write_message(RecordMessage(stream="s", record={"a": 2}))
    assert out.getvalue() == b""
    writer.write_message(StateMessage(value={"bookmarks": {}}))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [m["type"] for m in lines] == ["RECORD", "RECORD", "STATE"]
    assert lines[1]["record"] == {"a": 2}


def test_a_record_waits_at_most_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    out = binary_stdout(monkeypatch)
    clock = [100.0]
    monkeypatch.setattr(records.time, "monotonic", lambda: clock[0])
    writer = MessageWriter()
    writer.write_message(RecordMessage(stream="s", record={"a": 1}))
    assert out.getvalue() == b""
    clock[0] += records.FLUSH_SECONDS
    writer.write_message(RecordMessage(stream="s", record={"a": 2}))
    assert len(out.getvalue().splitlines()) == 2


def test_a_text_stdout_gets_text(monkeypatch: pytest.MonkeyPatch) -> None:
    text = io.StringIO()
    monkeypatch.setattr(records.sys, "stdout", text)
    writer = MessageWriter()
    writer.write_message(RecordMessage(stream="s", record={"é": "ü"}))
    writer.flush()
    assert json.loads(text.getvalue())["record"] == {"é": "ü"}


def test_a_record_that_fails_to_encode_leaves_no_partial_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = binary_stdout(monkeypatch)
    writer = MessageWriter()
    writer.write_record("s", {"a": 1}, None, None)
    cyclic: dict[str, Any] = {"a": "x" * 100}
    cyclic["self"] = cyclic
    with pytest.raises(RecursionError):
        writer.write_record("s", cyclic, None, None)
    with pytest.raises(RecursionError):
        writer.write_message(RecordMessage(stream="s", record=cyclic))
    writer.write_message(StateMessage(value={"bookmarks": {}}))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [m["type"] for m in lines] == ["RECORD", "STATE"]


# -- compiled conformance -----------------------------------------------------------------

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": ["string"]},
        "flag": {"type": ["boolean", "null"]},
        "score": {"type": ["number", "null"]},
        "open": {"type": ["object", "null"], "additionalProperties": True},
        "nested": {
            "type": ["object", "null"],
            "properties": {"keep": {"type": ["string", "null"]}, "b": {"type": ["boolean"]}},
        },
        "items": {
            "type": ["array", "null"],
            "items": {"type": "object", "properties": {"x": {"type": ["integer"]}}},
        },
        "tags": {"type": ["array", "null"], "items": {"type": ["string"]}},
    },
}

RECORDS: list[dict[str, Any]] = [
    {"id": "1", "flag": 1, "score": 2, "open": {"anything": [1]}, "tags": ["a"]},
    {"id": "2", "flag": 0, "score": float("nan"), "extra": 5},
    {"id": "3", "nested": {"keep": "k", "drop": 1, "b": 0}, "items": [{"x": 1, "y": 2}, {}]},
    {"id": "4", "flag": None, "nested": None, "items": None, "score": 1.5},
    {"id": "5", "flag": True, "score": float("inf"), "items": [{"x": 3}]},
]


@pytest.mark.parametrize("record", RECORDS)
def test_compiled_conformance_equals_the_sdk_on_json_records(record: dict[str, Any]) -> None:
    logger = logging.getLogger("test")
    expected = conform_record_data_types(
        "s", copy.deepcopy(record), SCHEMA, TypeConformanceLevel.RECURSIVE, logger
    )
    conformer = compile_conformer(SCHEMA)
    assert conformer is not None
    unmapped: set[str] = set()
    got = conformer(copy.deepcopy(record), unmapped)
    assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True)
    if "extra" in record:
        assert unmapped == {"extra"}
    if record.get("nested"):
        assert unmapped >= {"nested.drop", "items.y"}


def test_nothing_to_conform_compiles_to_nothing() -> None:
    assert compile_conformer({"type": ["string", "null"]}) is None
    assert compile_conformer({"type": "array", "items": {"type": "integer"}}) is None
    number = compile_conformer({"type": ["number"]})
    assert number is not None
    assert number(float("nan"), set()) is None
    assert number(2.5, set()) == 2.5
    assert not math.isnan(number(1e308, set()))


# -- parsing response bodies --------------------------------------------------------------


def _response(content: bytes) -> requests.Response:
    response = requests.Response()
    response._content = content
    response.status_code = 200
    return response


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"a": [1, 2.5, "\\u00e9", null, true]}', {"a": [1, 2.5, "é", None, True]}),
        (b'{"big": 123456789012345678901234567890}', {"big": 123456789012345678901234567890}),
        (b"\xef\xbb\xbf{}", {}),
    ],
)
def test_response_bodies_parse_as_the_standard_library_does(content: bytes, expected: Any) -> None:
    assert response_json(_response(content)) == expected


def test_what_msgspec_refuses_is_read_as_python_reads_it() -> None:
    parsed = response_json(_response(b'{"a": NaN, "b": 1.5e400}'))
    assert math.isnan(parsed["a"])
    assert parsed["b"] == math.inf
    for bad in (b"", b"<html>", b'{"a": 1'):
        with pytest.raises(json.JSONDecodeError):
            response_json(_response(bad))


def test_open_objects_without_typed_members_compile_to_nothing() -> None:
    open_object = {"type": ["object", "null"], "properties": {}, "additionalProperties": True}
    message = {
        "type": "object",
        "additionalProperties": True,
        "properties": {"body": open_object, "to": {"type": ["array"], "items": {}}},
    }
    assert compile_conformer(open_object) is None
    assert compile_conformer({"type": "array", "items": message}) is None
    closed = {"type": "object", "properties": {"body": open_object}}
    conformer = compile_conformer(closed)
    assert conformer is not None
    unmapped: set[str] = set()
    assert conformer({"body": {"x": 1}, "y": 2}, unmapped) == {"body": {"x": 1}}
    assert unmapped == {"y"}


@pytest.mark.parametrize(
    "text",
    [
        "2024-01-01T00:00:00.000000+00:00",
        "2024-01-01T00:00:00.000001+00:00",
        "2024-01-01T00:00:00+00:00",
        "2024-01-01 00:00:00+00:00",
        "2024-01-01T00:00:00.123+00:00",
        "2024-01-01T01:00:00+01:00",
        "2024-01-01T01:00:00Z",
        "2024-01-01T01:00:00",
        "2024.01.01 10:00:00",
    ],
)
def test_the_quick_timestamp_path_writes_what_the_full_one_does(text: str) -> None:
    assert to_rfc3339(text) == to_rfc3339(" " + text + " ")  # spaces take the full path
    assert to_rfc3339(text) == format_rfc3339(parse_datetime(text))


def test_a_record_written_without_its_message_object_is_the_same_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = binary_stdout(monkeypatch)
    when = datetime.datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=datetime.timezone.utc)
    writer = MessageWriter()
    for version in (None, 7):
        writer.write_message(
            RecordMessage(stream="s", record={"a": 1}, version=version, time_extracted=when)
        )
        writer.write_record("s", {"a": 1}, version, when)
    writer.flush()
    lines = out.getvalue().splitlines()
    assert lines[0] == lines[1]
    assert lines[2] == lines[3]
    assert json.loads(lines[2])["version"] == 7


def test_a_stream_without_children_makes_no_child_context() -> None:
    class Leaf(records.ConformedRecords):
        child_streams: list[Any] = []

    assert list(Leaf().generate_child_contexts({"a": 1}, None)) == []


def test_compiled_conformance_reads_text_in_a_boolean_column() -> None:
    conformer = compile_conformer(SCHEMA)
    assert conformer is not None
    cases = [("false", False), ("True", True), ("n", False), ("1", True), ("maybe", None)]
    for sent, delivered in cases:
        assert conformer({"id": "x", "flag": sent}, set())["flag"] == delivered


def test_a_state_is_the_line_its_message_dict_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    out = binary_stdout(monkeypatch)
    value = {"bookmarks": {"s": {"partitions": [{"context": {"id": 1}, "x": None}]}}}
    message = StateMessage(value=value)
    writer = MessageWriter()
    writer.write_message(message)
    records._ENCODER.encode_into(message.to_dict(), expected := bytearray(), -1)
    assert out.getvalue() == bytes(expected) + b"\n"
