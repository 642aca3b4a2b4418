"""Re:infer comments through the lean record loop write what the SDK's own loop writes."""

from __future__ import annotations

import copy
import gc
import re
from typing import Any

import pytest
import requests_mock as rm
from hypothesis import given
from hypothesis import strategies as st

from dataplatforms_sandbox import Sandbox
from tap_dataplatforms.core import records
from tap_dataplatforms.core.records import LeanRecordLoop, tune_garbage_collection
from tap_dataplatforms.core.sdk import SDKStream
from tap_dataplatforms.core.timestamps import UTC, to_rfc3339
from tap_dataplatforms.reinfer import comments as reinfer_comments
from tap_dataplatforms.reinfer.streams import CommentsStream
from tests.helpers import FakeClock, make_tap
from tests.lean_loop import comparable
from tests.test_reinfer_sandbox import COMMENTS, ROOMY, only, reinfer_config, run_ordered
from tests.test_reinfer_unit import DIRECT, comment, mock_base
from tests.test_reinfer_unit import config as unit_config


def both_loops(
    monkeypatch: pytest.MonkeyPatch, run: Any, used: dict[str, int]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    monkeypatch.setattr(CommentsStream, "LEAN_RECORD_LOOP", False)
    reinfer_comments.CONVERTED.clear()
    standard = comparable(run())
    assert used["lean"] == 0
    assert used["sdk"] > 0
    monkeypatch.setattr(CommentsStream, "LEAN_RECORD_LOOP", True)
    reinfer_comments.CONVERTED.clear()
    lean = comparable(run())
    assert used["lean"] > 0
    return standard, lean


@pytest.mark.parametrize("workers", [1, 4])
def test_the_lean_loop_writes_what_the_sdk_loop_writes(
    monkeypatch: pytest.MonkeyPatch, loops: dict[str, int], workers: int
) -> None:
    with Sandbox(seed=3, scale=1, limits=ROOMY, bulk={"reinfer": (2000, 600)}) as sb:

        def run(state: dict[str, Any] | None = None) -> list[dict[str, Any]]:
            config = reinfer_config(sb)
            config["max_concurrency"] = workers
            tap = only(make_tap(config, state=copy.deepcopy(state)), "reinfer_sources", COMMENTS)
            return run_ordered(tap)

        standard, lean = both_loops(monkeypatch, run, loops)
        assert lean == standard
        records = [m for m in lean if m["type"] == "RECORD" and m["stream"] == COMMENTS]
        assert len(records) > 2000
        states = [m for m in lean if m["type"] == "STATE"]
        assert len(states) > len(records) // 256  # a STATE after every full page, as before

        # Resumed from the last STATE: the same bookmarks are read and written.
        last = states[-1]["value"]
        loops.update(lean=0, sdk=0)
        standard, lean = both_loops(monkeypatch, lambda: run(last), loops)
        assert lean == standard


def test_null_and_odd_timestamps_and_a_failed_page_as_the_sdk_loop_has_them(
    requests_mock: rm.Mocker, monkeypatch: pytest.MonkeyPatch, loops: dict[str, int]
) -> None:
    mock_base(requests_mock)
    first = [
        comment(1, "2024-05-01T10:00:00Z"),
        {**comment(2, "2024-05-01T10:00:00Z"), "timestamp": None},
        comment(3, "2024-05-01T12:00:00.000001+00:00"),
        {**comment(4, "2024-05-01T12:30:00+02:00"), "extra": "dropped"},
    ]
    inbox = f"{DIRECT}/api/_private/sources/acme/inbox/comments"
    requests_mock.get(
        inbox,
        [
            {"json": {"status": "ok", "comments": first, "continuation": "c1"}},
            {"status_code": 404, "json": {"status": "error", "message": "gone"}},
        ]
        * 2,
    )
    requests_mock.get(
        f"{DIRECT}/api/_private/sources/acme/calls/comments",
        json={
            "status": "ok",
            "comments": [comment(5, "2024-05-02T00:00:00Z"), comment(4, "2024-05-01T00:00:00Z")],
            "continuation": None,
        },
    )

    def run() -> list[dict[str, Any]]:
        tap = only(make_tap(unit_config(), clock=FakeClock()), "reinfer_sources", COMMENTS)
        return run_ordered(tap)

    standard, lean = both_loops(monkeypatch, run, loops)
    assert lean == standard
    ids = [m["record"]["id"] for m in lean if m["type"] == "RECORD" and m["stream"] == COMMENTS]
    assert ids == ["msg-1", "msg-2", "msg-3", "msg-4", "msg-5", "msg-4"]


def test_a_stream_with_children_or_a_record_limit_takes_the_sdk_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tap = make_tap(unit_config())
    comments = tap.streams[COMMENTS]
    assert isinstance(comments, LeanRecordLoop)
    context = {"source_id": "s", "project": "p", "source_name": "n"}
    assert comments._lean_loop_fits(context, True)
    assert not comments._lean_loop_fits(context, False)
    assert not comments._lean_loop_fits(None, True)
    monkeypatch.setattr(comments, "ABORT_AT_RECORD_COUNT", 10)
    assert not comments._lean_loop_fits(context, True)
    monkeypatch.setattr(comments, "ABORT_AT_RECORD_COUNT", None)
    monkeypatch.setattr(comments, "child_streams", [object()])
    assert not comments._lean_loop_fits(context, True)
    monkeypatch.setattr(comments, "child_streams", [])
    monkeypatch.setattr(CommentsStream, "check_sorted", True)
    assert not comments._lean_loop_fits(context, True)
    # The loop is the SDK's own otherwise: the override is there, not a copy of it.
    assert LeanRecordLoop.sync_partition is not SDKStream.sync_partition


TIMESTAMPS = [
    "2024-01-01T00:00:00+00:00",
    "2024-01-01T00:00:00.000000+00:00",
    "2024-01-01T00:00:00.000001+00:00",
    "2024-01-01T00:00:00.123+00:00",
    "2024-01-01T01:00:00+01:00",
    "2024-01-01T01:00:00Z",
    "2024-01-01T01:00:00",
    "2024.01.01 10:00:00",
    "2024-W01-1T00:00:00+00:00",
    "2024-01-01 00:00:00+00:00",
    "1704067200000",
    "",
    1704067200000,
    None,
]


@pytest.mark.parametrize("value", TIMESTAMPS)
def test_comment_timestamps_convert_as_to_rfc3339_does(value: Any) -> None:
    reinfer_comments.CONVERTED.clear()
    expected = to_rfc3339(value)
    assert reinfer_comments.rfc3339(value) == expected
    assert reinfer_comments.rfc3339(value) == expected  # kept the second time


@pytest.mark.parametrize("value", ["2024-13-01T00:00:00+00:00", "not a date", "2024-01-01T25:00"])
def test_an_unreadable_comment_timestamp_fails_as_before(value: str) -> None:
    try:
        to_rfc3339(value)
    except ValueError as exc:
        message = str(exc)
    else:
        pytest.fail(f"{value!r} converted")
    with pytest.raises(ValueError, match=re.escape(message)):
        reinfer_comments.rfc3339(value)


@given(st.datetimes(timezones=st.just(UTC)))
def test_any_utc_timestamp_converts_as_to_rfc3339_does(moment: Any) -> None:
    for text in (moment.isoformat(), moment.isoformat().replace("+00:00", "Z")):
        assert reinfer_comments.rfc3339(text) == to_rfc3339(text)


def test_the_garbage_collector_is_tuned_for_many_small_records() -> None:
    before = gc.get_threshold()
    try:
        tune_garbage_collection()
        assert gc.get_threshold()[0] == records.GC_YOUNG_THRESHOLD
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
