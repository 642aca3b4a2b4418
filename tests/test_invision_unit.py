"""InVision streams against requests-mock: auth, windows, bookmarks, 500s, runs, tables."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import requests_mock as rm
import urllib3

from tap_dataplatforms.core.errors import (
    PlatformAuthError,
    PlatformUnavailableError,
    SyncFailedError,
)
from tap_dataplatforms.core.http import PlatformStream
from tap_dataplatforms.invision import table_stream_names
from tap_dataplatforms.invision.inference import infer_schema
from tests.helpers import FakeClock, make_tap, run_sync

ROOT = "https://erp.example.com/invision"
KEY = "dd63a1ad-60eb-4066-8d71-1721007437b4"
MONITORING = f"{ROOT}/api/v1/monitoring"
FLOW = "2b081248-4963-43b3-ba06-5b7403d58b4d"
FLOW_B = "7c1d0d8e-0000-4000-8000-00000000000b"
# FakeClock's wall start, 2027-01-15T08:00:00Z.
NOW = dt.datetime.fromtimestamp(1_800_000_000, tz=dt.timezone.utc)


def config(**block: Any) -> dict[str, Any]:
    top = {k: block.pop(k) for k in ("start_date", "lookback_seconds", "max_retries") if k in block}
    return {**top, "invision": {"api_url": ROOT, "api_key": KEY, **block}}


def log_row(
    rowid: int, when: str, data: str = "Data flow 'Load actuals' started"
) -> dict[str, Any]:
    return {
        "rowid": rowid,
        "data": data,
        "level": "Information",
        "timestamputc": when,
        "logevent": "DataFlowExecution",
    }


def query(request: Any) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}


def windows(mock: rm.Mocker) -> list[tuple[str, str]]:
    return [
        (query(r)["fromDateTimeUtc"], query(r)["toDateTimeUtc"])
        for r in mock.request_history
        if r.path.endswith("/api/v1/monitoring")
    ]


def select_only(tap: Any, *names: str) -> None:
    for stream in tap.streams.values():
        stream.selected = stream.name in names


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PlatformStream, "retry_base_seconds", 0.001)


# -- auth and base URL ---------------------------------------------------------------


@pytest.mark.parametrize("root", [ROOT, ROOT + "/"])
def test_key_only_in_the_header_and_root_with_or_without_slash(
    requests_mock: rm.Mocker, root: str
) -> None:
    requests_mock.get(MONITORING, json=[])
    requests_mock.get(f"{ROOT}/api/pub/v1/db/tables/GL_Actuals/data", json=[{"a": 1}])
    cfg = config(start_date="2027-01-15T07:00:00Z", tables=["GL_Actuals"])
    cfg["invision"]["api_url"] = root
    out = run_sync(make_tap(cfg, clock=FakeClock()))
    assert out.records["invision_table__gl_actuals"] == [{"a": 1}]
    assert requests_mock.request_history
    for request in requests_mock.request_history:
        assert request.headers["x-api-key"] == KEY
        assert "api_key" not in request.url.lower()
        assert KEY not in request.url
        assert request.url.startswith(ROOT + "/api/")
        assert "//api" not in request.url


def test_separate_monitoring_and_data_keys(requests_mock: rm.Mocker) -> None:
    requests_mock.get(MONITORING, json=[])
    requests_mock.get(f"{ROOT}/api/pub/v1/db/tables/T/data", json=[])
    cfg = config(
        start_date="2027-01-15T07:00:00Z",
        tables=["T"],
        monitoring_api_key="mon-key-0001",
        data_api_key="data-key-0001",
    )
    run_sync(make_tap(cfg, clock=FakeClock()))
    for request in requests_mock.request_history:
        expected = "mon-key-0001" if "monitoring" in request.path else "data-key-0001"
        assert request.headers["x-api-key"] == expected


# -- execution log -------------------------------------------------------------------


def test_log_windows_are_a_day_or_less_up_to_the_sync_start(requests_mock: rm.Mocker) -> None:
    requests_mock.get(MONITORING, json=[])
    cfg = config(start_date="2027-01-12T10:30:15.700Z")
    tap = make_tap(cfg, clock=FakeClock())
    select_only(tap, "invision_execution_log")
    run_sync(tap)
    sent = windows(requests_mock)
    # One check window of a minute, then the sync's windows.
    assert sent[0] == ("2027.01.15 07:59:00", "2027.01.15 08:00:00")
    assert sent[1:] == [
        ("2027.01.12 10:30:15", "2027.01.13 10:30:15"),
        ("2027.01.13 10:30:14", "2027.01.14 10:30:14"),
        ("2027.01.14 10:30:13", "2027.01.15 08:00:00"),
    ]
    request = requests_mock.request_history[1]
    assert query(request)["logEventType"] == "DataFlowExecution"
    # The documented encoding of the space in the filter format.
    assert "fromDateTimeUtc=2027.01.12%2010%3A30%3A15" in request.url


def test_log_rows_normalised_sorted_deduplicated_and_bookmarked(
    requests_mock: rm.Mocker,
) -> None:
    first = [
        log_row(12, "2027-01-14T09:00:00"),
        log_row(10, "2027-01-14T08:00:00.250"),
        log_row(11, "2027-01-14T08:00:00.250", "queued"),
        log_row(9, "2027-01-14T06:59:59.900"),  # before start_date, same second
    ]
    second = [log_row(12, "2027-01-14T09:00:00"), log_row(13, "2027.01.15 07:30:00")]

    def monitoring(request: Any, context: Any) -> list[dict[str, Any]]:
        start = query(request)["fromDateTimeUtc"]
        return {"2027.01.14 06:59:59": first, "2027.01.15 06:59:58": second}.get(start, [])

    requests_mock.get(MONITORING, json=monitoring)
    cfg = config(start_date="2027-01-14T06:59:59.950Z")
    tap = make_tap(cfg, clock=FakeClock())
    select_only(tap, "invision_execution_log")
    out = run_sync(tap)
    rows = out.records["invision_execution_log"]
    assert [r["rowid"] for r in rows] == [10, 11, 12, 13]
    assert [r["timestamputc"] for r in rows] == [
        "2027-01-14T08:00:00.250000+00:00",
        "2027-01-14T08:00:00.250000+00:00",
        "2027-01-14T09:00:00+00:00",
        "2027-01-15T07:30:00+00:00",
    ]
    assert out.schemas["invision_execution_log"]["properties"]["timestamputc"]["format"] == (
        "date-time"
    )
    bookmark = out.states[-1]["bookmarks"]["invision_execution_log"]
    assert bookmark["replication_key_value"] == "2027-01-15T07:30:00+00:00"


def test_log_rows_of_other_events_or_without_a_time_are_left_out(
    requests_mock: rm.Mocker,
) -> None:
    other = {**log_row(2, "2027-01-15T07:10:00"), "logevent": "WorkbookExecution"}
    untimed = {**log_row(3, "2027-01-15T07:20:00"), "timestamputc": "yesterday"}
    text_id = {**log_row(4, "2027-01-15T07:30:00Z"), "rowid": "4"}
    requests_mock.get(MONITORING, json=[log_row(1, "2027-01-15T07:00:00"), other, untimed, text_id])
    tap = make_tap(config(start_date="2027-01-15T06:00:00Z"), clock=FakeClock())
    select_only(tap, "invision_execution_log")
    out = run_sync(tap)
    assert [r["rowid"] for r in out.records["invision_execution_log"]] == [1, 4]


def test_a_server_ignoring_the_window_still_yields_each_row_once(
    requests_mock: rm.Mocker,
) -> None:
    rows = [
        log_row(1, "2027-01-13T12:00:00"),
        log_row(2, "2027-01-14T10:00:00"),  # in two windows' shared second
        log_row(3, "2027-01-15T07:59:59.500"),
        log_row(4, "2027-01-15T08:00:00.300"),  # after the sync's start: next time
    ]
    requests_mock.get(MONITORING, json=rows)
    tap = make_tap(config(start_date="2027-01-13T10:00:00Z"), clock=FakeClock())
    select_only(tap, "invision_execution_log")
    out = run_sync(tap)
    assert [r["rowid"] for r in out.records["invision_execution_log"]] == [1, 2, 3]


def test_second_sync_starts_at_the_bookmark_and_drops_older_rows(
    requests_mock: rm.Mocker,
) -> None:
    rows = [
        log_row(20, "2027-01-15T07:30:00.100"),  # same second, before the bookmark
        log_row(21, "2027-01-15T07:30:00.500"),  # the bookmark's own instant
        log_row(22, "2027-01-15T07:45:00"),
    ]
    requests_mock.get(MONITORING, json=rows)
    state = {
        "bookmarks": {
            "invision_execution_log": {
                "replication_key": "timestamputc",
                "replication_key_value": "2027-01-15T07:30:00.500000+00:00",
            }
        }
    }
    tap = make_tap(config(start_date="2026-01-01T00:00:00Z"), clock=FakeClock(), state=state)
    select_only(tap, "invision_execution_log")
    out = run_sync(tap)
    assert windows(requests_mock)[1:] == [("2027.01.15 07:30:00", "2027.01.15 08:00:00")]
    assert [r["rowid"] for r in out.records["invision_execution_log"]] == [21, 22]


def test_lookback_moves_the_window_back(requests_mock: rm.Mocker) -> None:
    requests_mock.get(MONITORING, json=[])
    state = {
        "bookmarks": {
            "invision_execution_log": {
                "replication_key": "timestamputc",
                "replication_key_value": "2027-01-15T07:30:00+00:00",
            }
        }
    }
    cfg = config(lookback_seconds=600)
    tap = make_tap(cfg, clock=FakeClock(), state=state)
    select_only(tap, "invision_execution_log")
    run_sync(tap)
    assert windows(requests_mock)[1:] == [("2027.01.15 07:20:00", "2027.01.15 08:00:00")]


def test_a_very_large_window_is_followed_by_a_shorter_one(
    requests_mock: rm.Mocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tap_dataplatforms.invision.streams.LARGE_WINDOW_ROWS", 2)
    big = [log_row(1, "2027-01-13T01:00:00"), log_row(2, "2027-01-13T02:00:00")]

    def monitoring(request: Any, context: Any) -> list[dict[str, Any]]:
        return big if query(request)["fromDateTimeUtc"] == "2027.01.13 00:00:00" else []

    requests_mock.get(MONITORING, json=monitoring)
    tap = make_tap(config(start_date="2027-01-13T00:00:00Z"), clock=FakeClock())
    select_only(tap, "invision_execution_log")
    run_sync(tap)
    assert windows(requests_mock)[1:4] == [
        ("2027.01.13 00:00:00", "2027.01.14 00:00:00"),
        ("2027.01.13 23:59:59", "2027.01.14 11:59:59"),
        ("2027.01.14 11:59:58", "2027.01.15 08:00:00"),
    ]


def test_only_the_first_partition_reads_the_log(requests_mock: rm.Mocker) -> None:
    requests_mock.get(MONITORING, json=[log_row(1, "2027-01-15T07:00:00")])
    counts = []
    for index in range(2):
        cfg = config(start_date="2027-01-15T06:00:00Z")
        cfg["partition"] = {"index": index, "count": 2}
        tap = make_tap(cfg, clock=FakeClock())
        select_only(tap, "invision_execution_log")
        counts.append(len(run_sync(tap).records["invision_execution_log"]))
    assert counts == [1, 0]


# -- errors: everything is a 500 ------------------------------------------------------


def test_a_bad_key_fails_fast_at_the_connection_check(requests_mock: rm.Mocker) -> None:
    body = {"Message": "An error has occurred.", "ExceptionMessage": "Invalid API key."}
    requests_mock.get(MONITORING, status_code=500, json=body)
    tap = make_tap(config(start_date="2027-01-01T00:00:00Z"), clock=FakeClock())
    with pytest.raises(PlatformUnavailableError) as caught:
        run_sync(tap)
    message = str(caught.value)
    assert message.startswith("InVision: HTTP 500")
    assert "Invalid API key." in message
    assert KEY not in message
    assert len(requests_mock.request_history) == 2  # the check tries twice, no more


def test_a_500_table_is_retried_a_few_times_then_fails_naming_table_and_body(
    requests_mock: rm.Mocker,
) -> None:
    html_page = "<html><head><title>Error</title></head><body><h1>Invalid object name 'Nope'.</h1>"
    requests_mock.get(f"{ROOT}/api/pub/v1/db/tables/Nope/data", status_code=500, text=html_page)
    requests_mock.get(f"{ROOT}/api/pub/v1/db/tables/Good/data", json=[{"x": "y"}])
    requests_mock.get(MONITORING, json=[])
    cfg = config(start_date="2027-01-15T07:00:00Z", tables=["Nope", "Good"])
    tap = make_tap(cfg, clock=FakeClock())
    with pytest.raises(SyncFailedError) as caught:
        run_sync(tap)
    text = str(caught.value)
    assert "invision_table__nope [table=Nope]" in text
    assert "Invalid object name 'Nope'." in text
    assert "<h1>" not in text
    nope = [r for r in requests_mock.request_history if "/Nope/" in r.url]
    # Discovery samples with one retry; the sync tries 1 + 3 times (MAX_RETRIES).
    assert len(nope) == 2 + 4
    assert "Good" not in text


def test_max_retries_setting_can_lower_the_bound(requests_mock: rm.Mocker) -> None:
    requests_mock.get(f"{ROOT}/api/pub/v1/db/tables/Nope/data", status_code=500, text="boom")
    requests_mock.get(f"{ROOT}/api/pub/v1/db/tables/Good/data", json=[])
    tap = make_tap(config(tables=["Nope", "Good"], max_retries=1), clock=FakeClock())
    select_only(tap, "invision_table__nope", "invision_table__good")
    with pytest.raises(SyncFailedError, match="boom"):
        run_sync(tap)
    assert len([r for r in requests_mock.request_history if "/Nope/" in r.url]) == 2 + 2


def test_when_no_selected_table_could_be_sampled_the_check_fails_fast(
    requests_mock: rm.Mocker,
) -> None:
    requests_mock.get(
        f"{ROOT}/api/pub/v1/db/tables/T/data", status_code=500, json={"Message": "Invalid key"}
    )
    tap = make_tap(config(tables=["T"]), clock=FakeClock())
    select_only(tap, "invision_table__t")
    with pytest.raises(PlatformUnavailableError, match="Invalid key"):
        run_sync(tap)
    assert len(requests_mock.request_history) == 2 + 2  # discovery, then the check


# -- data flow runs ------------------------------------------------------------------


def start_url(flow: str) -> str:
    return f"{ROOT}/api/pub/v1/dataflows/{flow}/start"


def status_url(flow: str, run: str) -> str:
    return f"{ROOT}/api/pub/v1/dataflows/{flow}/runs/{run}/status"


def runs_config(**extra: Any) -> dict[str, Any]:
    block = {
        "dataflow_ids": [FLOW],
        "trigger_dataflows": True,
        "poll_interval_seconds": 2,
        "await_timeout_seconds": 600,
    }
    block.update(extra)
    return config(**block)


def test_nothing_is_started_when_trigger_dataflows_is_false(requests_mock: rm.Mocker) -> None:
    tap = make_tap(runs_config(trigger_dataflows=False), clock=FakeClock())
    select_only(tap, "invision_dataflow_runs")
    out = run_sync(tap)
    assert requests_mock.request_history == []
    assert out.records["invision_dataflow_runs"] == []


def test_a_run_is_polled_with_growing_intervals_until_it_succeeds(
    requests_mock: rm.Mocker,
) -> None:
    requests_mock.post(start_url(FLOW), json={"runId": "run-1", "status": "Pending"})
    # Serializer casing varies: accept any case of names and values.
    requests_mock.get(
        status_url(FLOW, "run-1"),
        [
            {"json": {"runId": "run-1", "status": "Pending"}},
            {"json": {"RunId": "run-1", "Status": "running"}},
            {"json": {"runId": "run-1", "status": "Running"}},
            {"json": {"runId": "run-1", "status": "SUCCEEDED"}},
        ],
    )
    clock = FakeClock()
    tap = make_tap(runs_config(), clock=clock)
    select_only(tap, "invision_dataflow_runs")
    out = run_sync(tap)
    post = requests_mock.request_history[0]
    assert post.method == "POST"
    assert "await" not in post.url
    assert post.headers.get("Content-Length") == "0"
    assert clock.sleeps == [2, 3, 4.5, 6.75]
    [record] = out.records["invision_dataflow_runs"]
    assert record == {
        "run_id": "run-1",
        "dataflow_id": FLOW,
        "status": "Succeeded",
        "started_at": "2027-01-15T08:00:00+00:00",
        "finished_at": "2027-01-15T08:00:16.250000+00:00",
        "duration_seconds": 16.25,
        "polls": 4,
        "timed_out": False,
    }


def test_a_failed_run_is_emitted_and_ends_the_sync_non_zero(requests_mock: rm.Mocker) -> None:
    requests_mock.post(start_url(FLOW), json={"runId": "run-f", "status": "Running"})
    requests_mock.get(status_url(FLOW, "run-f"), json={"runId": "run-f", "status": "Failed"})
    tap = make_tap(runs_config(), clock=FakeClock())
    select_only(tap, "invision_dataflow_runs")
    out = run_sync(tap, finish=False)
    assert [r["status"] for r in out.records["invision_dataflow_runs"]] == ["Failed"]
    with pytest.raises(SyncFailedError) as caught:
        tap.finish()
    assert f"invision_dataflow_runs [dataflow_id={FLOW}]" in str(caught.value)
    assert "Failed" in str(caught.value)


def test_a_run_that_never_ends_times_out(requests_mock: rm.Mocker) -> None:
    requests_mock.post(start_url(FLOW), json={"runId": "run-h", "status": "Pending"})
    requests_mock.get(status_url(FLOW, "run-h"), json={"runId": "run-h", "status": "Running"})
    clock = FakeClock()
    tap = make_tap(runs_config(await_timeout_seconds=100, poll_interval_seconds=10), clock=clock)
    select_only(tap, "invision_dataflow_runs")
    out = run_sync(tap, finish=False)
    [record] = out.records["invision_dataflow_runs"]
    assert record["status"] == "TimedOut"
    assert record["timed_out"] is True
    assert record["finished_at"] is None
    assert sum(clock.sleeps) == pytest.approx(100)
    assert max(clock.sleeps) <= 60
    with pytest.raises(SyncFailedError, match="await_timeout_seconds"):
        tap.finish()


def test_a_start_answered_500_that_started_nothing_is_not_sent_again(
    requests_mock: rm.Mocker,
) -> None:
    # Every InVision failure is a 500, a bad id as much as a lost answer: the log is
    # searched, shows no run of the flow, so the 500 is final (an unknown id costs one
    # start, not two) and the failure names the flow.
    requests_mock.post(start_url(FLOW), status_code=500, text="Object reference not set")
    requests_mock.post(start_url(FLOW_B), json={"runId": "run-b", "status": "Succeeded"})
    requests_mock.get(MONITORING, json=[])
    clock = FakeClock()
    tap = make_tap(runs_config(dataflow_ids=[FLOW, FLOW_B]), clock=clock)
    select_only(tap, "invision_dataflow_runs")
    out = run_sync(tap, finish=False)
    posts = [r for r in requests_mock.request_history if r.method == "POST" and FLOW in r.url]
    assert len(posts) == 1
    assert [r["run_id"] for r in out.records["invision_dataflow_runs"]] == ["run-b"]
    # The log was searched around the instant of the start, for a grace period.
    searched = windows(requests_mock)
    assert searched[0] == ("2027.01.15 07:58:00", "2027.01.15 08:02:00")
    assert 10.0 <= sum(clock.sleeps) < 2 * 10.0
    with pytest.raises(SyncFailedError) as caught:
        tap.finish()
    assert FLOW in str(caught.value)
    assert "Object reference not set" in str(caught.value)
    assert "not sent again" in str(caught.value)
    assert FLOW_B not in str(caught.value)


def test_a_dropped_start_that_started_nothing_is_sent_once_more(
    requests_mock: rm.Mocker,
) -> None:
    # No answer at all says nothing about the id: after the log shows nothing, the
    # start is sent once more (and only once).
    dropped = requests.exceptions.ConnectionError("Connection aborted: RemoteDisconnected")
    requests_mock.post(start_url(FLOW), exc=dropped)
    requests_mock.get(MONITORING, json=[])
    tap = make_tap(runs_config(dataflow_ids=[FLOW]), clock=FakeClock())
    select_only(tap, "invision_dataflow_runs")
    run_sync(tap, finish=False)
    posts = [r for r in requests_mock.request_history if r.method == "POST"]
    assert len(posts) == 2
    with pytest.raises(SyncFailedError, match=FLOW):
        tap.finish()


RUN = "ad73a1ad-60eb-1066-4d61-1821009431b2"
OTHER_RUN = "5e0c1f7a-1111-4222-8333-444455556666"


def test_a_lost_start_is_adopted_from_the_monitoring_log(requests_mock: rm.Mocker) -> None:
    dropped = requests.exceptions.ConnectionError("Connection aborted: RemoteDisconnected")
    requests_mock.post(start_url(FLOW), exc=dropped)
    # The lost start shows in the log; so does a run of another flow, nearer in time,
    # which the status call of this flow refuses (500, as every failure).
    requests_mock.get(
        MONITORING,
        json=[
            log_row(1, "2027-01-15T08:00:00.400", f"Data flow 'Load' started (run {RUN})"),
            log_row(2, "2027-01-15T08:00:00.100", f"Data flow 'Other' started (run {OTHER_RUN})"),
        ],
    )
    requests_mock.get(status_url(FLOW, OTHER_RUN), status_code=500, text="No such run")
    # Two passing 500s on the flow's own run do not make it look like another's.
    requests_mock.get(
        status_url(FLOW, RUN),
        [
            {"status_code": 500, "text": "Server busy"},
            {"status_code": 500, "text": "Server busy"},
            {"json": {"runId": RUN, "status": "Running"}},
            {"json": {"runId": RUN, "status": "Succeeded"}},
        ],
    )
    tap = make_tap(runs_config(monitoring_api_key="mon-key"), clock=FakeClock())
    select_only(tap, "invision_dataflow_runs")
    out = run_sync(tap)
    [record] = out.records["invision_dataflow_runs"]
    assert record["run_id"] == RUN
    assert record["status"] == "Succeeded"
    assert len([r for r in requests_mock.request_history if r.method == "POST"]) == 1
    # The log is read with the monitoring key.
    looked = [r for r in requests_mock.request_history if r.path.endswith("/monitoring")]
    assert len(looked) == 1
    assert looked[0].headers["x-api-key"] == "mon-key"


def test_a_lost_start_the_log_cannot_show_is_not_sent_again(requests_mock: rm.Mocker) -> None:
    requests_mock.post(start_url(FLOW), status_code=500, text="Object reference not set")
    requests_mock.get(MONITORING, status_code=500, text="Monitoring is not available")
    tap = make_tap(runs_config(), clock=FakeClock())
    select_only(tap, "invision_dataflow_runs")
    out = run_sync(tap, finish=False)
    assert out.records["invision_dataflow_runs"] == []
    assert len([r for r in requests_mock.request_history if r.method == "POST"]) == 1
    with pytest.raises(SyncFailedError) as caught:
        tap.finish()
    assert f"dataflow_id={FLOW}" in str(caught.value)
    assert "cannot be looked up" in str(caught.value)
    assert "Monitoring is not available" in str(caught.value)


def refused() -> requests.exceptions.ConnectionError:
    reason = urllib3.exceptions.NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]
    return requests.exceptions.ConnectionError(
        urllib3.exceptions.MaxRetryError(None, "/start", reason)  # type: ignore[arg-type]
    )


def test_a_start_is_sent_again_at_once_only_when_the_connection_was_never_made(
    requests_mock: rm.Mocker,
) -> None:
    requests_mock.post(
        start_url(FLOW),
        [{"exc": refused()}, {"json": {"runId": "run-1", "status": "Succeeded"}}],
    )
    dropped = requests.exceptions.ConnectionError("Connection aborted: RemoteDisconnected")
    requests_mock.post(start_url(FLOW_B), exc=dropped)
    requests_mock.get(MONITORING, status_code=500)
    tap = make_tap(runs_config(dataflow_ids=[FLOW, FLOW_B]), clock=FakeClock())
    select_only(tap, "invision_dataflow_runs")
    out = run_sync(tap, finish=False)
    assert [r["run_id"] for r in out.records["invision_dataflow_runs"]] == ["run-1"]
    assert len([r for r in requests_mock.request_history if FLOW in r.url]) == 2
    # The answer was lost after sending, and the log cannot tell what started: the flow
    # may be running; never start it twice.
    assert len([r for r in requests_mock.request_history if FLOW_B in r.url]) == 1
    with pytest.raises(SyncFailedError, match=f"dataflow_id={FLOW_B}"):
        tap.finish()


def test_a_rejected_key_stops_the_other_runs_at_their_next_poll(
    requests_mock: rm.Mocker,
) -> None:
    def rejected(request: Any, context: Any) -> dict[str, Any]:
        time.sleep(0.5)  # while the other run is being polled
        context.status_code = 401
        return {"Message": "Unauthorized"}

    requests_mock.post(start_url(FLOW), json=rejected)
    requests_mock.post(start_url(FLOW_B), json={"runId": "run-b", "status": "Pending"})
    requests_mock.get(status_url(FLOW_B, "run-b"), json={"runId": "run-b", "status": "Running"})
    cfg = runs_config(
        dataflow_ids=[FLOW_B, FLOW],
        poll_interval_seconds=0.01,
        await_timeout_seconds=30,
        # paced at 5 a second, run-b's first poll would leave after the refused start
        max_requests_per_second=100,
    )
    tap = make_tap(cfg)  # the real clock: the runs really run side by side
    select_only(tap, "invision_dataflow_runs")
    with pytest.raises(PlatformAuthError, match="Unauthorized"):
        run_sync(tap)
    polls = [r for r in requests_mock.request_history if "run-b" in r.url]
    # Waiting out the timeout would take about 19 polls (0.01 s growing by 1.5 to 30 s).
    assert 1 <= len(polls) <= 10


def test_a_test_run_never_starts_a_data_flow(requests_mock: rm.Mocker) -> None:
    requests_mock.get(MONITORING, json=[])
    requests_mock.post(start_url(FLOW), json={"runId": "run-1", "status": "Succeeded"})
    tap = make_tap(runs_config(start_date="2027-01-15T07:00:00Z"), clock=FakeClock())
    tap.run_connection_test()
    assert [r for r in requests_mock.request_history if r.method == "POST"] == []


def test_a_415_start_is_sent_once_more_as_json(requests_mock: rm.Mocker) -> None:
    requests_mock.post(
        start_url(FLOW),
        [
            {"status_code": 415, "json": {"Message": "Unsupported media type"}},
            {"json": {"runId": "run-j", "status": "Succeeded"}},
        ],
    )
    tap = make_tap(runs_config(), clock=FakeClock())
    select_only(tap, "invision_dataflow_runs")
    out = run_sync(tap)
    assert [r["run_id"] for r in out.records["invision_dataflow_runs"]] == ["run-j"]
    retry = requests_mock.request_history[1]
    assert retry.headers["Content-Type"] == "application/json"
    assert json.loads(retry.body) == {}


def test_a_few_500s_while_polling_are_tolerated_more_are_not(requests_mock: rm.Mocker) -> None:
    requests_mock.post(start_url(FLOW), json={"runId": "run-1", "status": "Pending"})
    requests_mock.post(start_url(FLOW_B), json={"runId": "run-2", "status": "Pending"})
    error = {"status_code": 500, "text": "worker busy"}
    requests_mock.get(
        status_url(FLOW, "run-1"),
        [error, error, {"json": {"runId": "run-1", "status": "Succeeded"}}],
    )
    requests_mock.get(status_url(FLOW_B, "run-2"), status_code=500, text="unknown run")
    cfg = runs_config(dataflow_ids=[FLOW, FLOW_B])
    cfg["max_concurrency"] = 1
    tap = make_tap(cfg, clock=FakeClock())
    select_only(tap, "invision_dataflow_runs")
    out = run_sync(tap, finish=False)
    records = {r["run_id"]: r for r in out.records["invision_dataflow_runs"]}
    assert records["run-1"]["status"] == "Succeeded"
    assert records["run-2"]["status"] == "Pending"  # the last status seen
    polls = [r for r in requests_mock.request_history if "run-2" in r.url]
    assert len(polls) == 4
    with pytest.raises(SyncFailedError) as caught:
        tap.finish()
    assert f"dataflow_id={FLOW_B}" in str(caught.value)
    assert "unknown run" in str(caught.value)


def test_partition_splits_data_flows_between_processes(requests_mock: rm.Mocker) -> None:
    flows = [f"flow-{n}" for n in range(12)]
    for flow in flows:
        requests_mock.post(start_url(flow), json={"runId": f"run-{flow}", "status": "Succeeded"})
    seen: list[str] = []
    for index in range(3):
        cfg = runs_config(dataflow_ids=flows)
        cfg["partition"] = {"index": index, "count": 3}
        tap = make_tap(cfg, clock=FakeClock())
        select_only(tap, "invision_dataflow_runs")
        out = run_sync(tap)
        seen += [r["dataflow_id"] for r in out.records["invision_dataflow_runs"]]
    assert sorted(seen) == sorted(flows)


# -- tables --------------------------------------------------------------------------


def test_table_columns_are_typed_from_a_sample_and_all_nullable(
    requests_mock: rm.Mocker,
) -> None:
    rows = [
        {"Account": "3000", "Amount": 1250, "Posted": "2024-05-01T06:00:00", "Note": None},
        {"Account": "3010", "Amount": -75.5, "Posted": "2024-05-02T06:00:00", "Ok": True},
    ]
    requests_mock.get(f"{ROOT}/api/pub/v1/db/tables/GL%20Actuals%20%C3%98st/data", json=rows)
    tap = make_tap(config(tables=["GL Actuals Øst"]), clock=FakeClock())
    select_only(tap, "invision_table__gl_actuals_ost")
    out = run_sync(tap)
    name = "invision_table__gl_actuals_ost"
    properties = out.schemas[name]["properties"]
    assert properties == {
        "Account": {"type": ["string", "null"]},
        "Amount": {"type": ["number", "null"]},
        "Posted": {"type": ["string", "null"], "format": "date-time"},
        "Note": {"type": ["string", "null"]},
        "Ok": {"type": ["boolean", "null"]},
    }
    assert out.records[name][0]["Posted"] == "2024-05-01T06:00:00+00:00"
    assert out.records[name][1]["Amount"] == -75.5


def test_a_catalog_schema_spares_the_discovery_sample(requests_mock: rm.Mocker) -> None:
    requests_mock.get(f"{ROOT}/api/pub/v1/db/tables/T/data", json=[{"a": 1}])
    requests_mock.get(MONITORING, json=[])
    catalog = {
        "streams": [
            {
                "tap_stream_id": "invision_table__t",
                "stream": "invision_table__t",
                "schema": {"type": "object", "properties": {"a": {"type": ["integer", "null"]}}},
                "metadata": [{"breadcrumb": [], "metadata": {"selected": True}}],
            }
        ]
    }
    tap = make_tap(config(tables=["T"]), clock=FakeClock(), catalog=catalog)
    out = run_sync(tap)
    assert out.records["invision_table__t"] == [{"a": 1}]
    # The connection check reads the table once, the sync once: no discovery sample.
    assert len([r for r in requests_mock.request_history if "/T/" in r.url]) == 2


def test_table_stream_names_are_slugs_unique_per_table() -> None:
    names = table_stream_names(["GL Actuals", "gl_actuals", "Prosjekt_Øst"])
    assert names["Prosjekt_Øst"] == "invision_table__prosjekt_ost"
    assert names["GL Actuals"] != names["gl_actuals"]
    assert all(n.startswith("invision_table__gl_actuals_") for n in list(names.values())[:2])


def test_schema_inference_widens_mixed_columns() -> None:
    schema = infer_schema(
        [
            {"n": 1, "mix": "a", "d": "2024-05-01", "t": "2024-05-01T00:00:00Z"},
            {"n": 2.0, "mix": 3, "d": None, "t": "not a time"},
        ]
    )
    assert schema["properties"] == {
        "n": {"type": ["number", "null"]},
        "mix": {"type": ["string", "number", "null"]},
        "d": {"type": ["string", "null"], "format": "date"},
        "t": {"type": ["string", "null"]},
    }
