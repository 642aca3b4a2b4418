"""Redivis metadata streams and the request core, against requests-mock."""

from __future__ import annotations

import email.utils
import itertools
import json
import math
from typing import Any

import pytest
import requests_mock as rm

from tap_dataplatforms.core.errors import PlatformAuthError, SyncFailedError
from tap_dataplatforms.core.http import PlatformStream
from tests.helpers import FakeClock, make_tap, run_sync

BASE = "https://redivis.test/api/v1"
TOKEN = "redivis-unit-token-1234"
DS_REF = "demo.claims:ye2v"
TABLE_REF = "demo.claims:ye2v:v1_0.drugs:0576"


def config(**extra: Any) -> dict[str, Any]:
    return {"redivis": {"api_url": BASE, "token": TOKEN, "organizations": ["demo"], **extra}}


def dataset(n: int) -> dict[str, Any]:
    return {
        "kind": "dataset",
        "id": f"ds-{n}",
        "name": f"claims{n}",
        "qualifiedReference": f"demo.claims{n}:ye2v" if n else DS_REF,
        "createdAt": 1649874053800,
        "updatedAt": 1714557600000,
        "owner": {"kind": "organization", "name": "demo"},
    }


def listing(results: list[dict[str, Any]], token: str | None) -> dict[str, Any]:
    return {"kind": "list", "nextPageToken": token, "results": results}


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PlatformStream, "retry_base_seconds", 0.001)


@pytest.fixture
def redivis(requests_mock: rm.Mocker) -> rm.Mocker:
    """Two dataset pages (the middle one empty but with a token), one table, two variables."""
    pages = {
        None: listing([dataset(0), dataset(1)], "t1"),
        "t1": listing([], "t2"),
        "t2": listing([dataset(2)], None),
    }

    def datasets(request: Any, context: Any) -> dict[str, Any]:
        token = request.qs.get("pagetoken", [None])[0]
        return pages[token]

    requests_mock.get(f"{BASE}/organizations/demo/datasets", json=datasets)
    for n in (1, 2):
        requests_mock.get(f"{BASE}/datasets/demo.claims{n}%3Aye2v/tables", json=listing([], None))
    table = {"kind": "table", "id": "t-1", "name": "drugs", "qualifiedReference": TABLE_REF}
    requests_mock.get(f"{BASE}/datasets/demo.claims%3Aye2v/tables", json=listing([table], None))
    variables = [
        {"kind": "variable", "name": "id", "type": "integer", "index": 0},
        {"kind": "variable", "name": "start", "type": "date", "index": 1},
    ]
    requests_mock.get(
        f"{BASE}/tables/demo.claims%3Aye2v%3Av1_0.drugs%3A0576/variables",
        json=listing(variables, None),
    )
    return requests_mock


def test_pages_parents_and_children(redivis: rm.Mocker) -> None:
    out = run_sync(make_tap(config(), clock=FakeClock()))
    assert [r["id"] for r in out.records["redivis_datasets"]] == ["ds-0", "ds-1", "ds-2"]
    first = out.records["redivis_datasets"][0]
    assert first["createdAt"] == "2022-04-13T18:20:53.800000+00:00"
    assert first["updatedAt"] == "2024-05-01T10:00:00+00:00"
    (table,) = out.records["redivis_tables"]
    assert table["dataset_id"] == "ds-0"
    assert table["dataset_reference"] == DS_REF
    variables = out.records["redivis_variables"]
    assert [(v["table_reference"], v["name"]) for v in variables] == [
        (TABLE_REF, "id"),
        (TABLE_REF, "start"),
    ]
    history = redivis.request_history
    dataset_calls = [h for h in history if h.path.endswith("/organizations/demo/datasets")]
    # One connection check, then three pages: the empty page with a token did not stop it.
    assert [h.qs.get("pagetoken") for h in dataset_calls[1:]] == [None, ["t1"], ["t2"]]
    assert all(h.qs["maxresults"] == ["100"] for h in dataset_calls[1:])
    variable_call = next(h for h in history if h.path.endswith("/variables"))
    assert variable_call.qs["maxresults"] == ["1000"]
    for call in history:
        assert call.headers["Authorization"] == f"Bearer {TOKEN}"
        assert call.headers["User-Agent"].startswith("tap-dataplatforms/")


def _retry_after(form: str, clock: FakeClock, delay: int) -> dict[str, str]:
    # Rounded up to the whole second, as a server writes a wait it wants kept: the clock
    # may stand between seconds (requests are paced), and rounding down would ask for less.
    instant = math.ceil(clock.time() + delay)
    return {
        "seconds": {"Retry-After": str(delay)},
        "http-date": {"Retry-After": email.utils.formatdate(instant, usegmt=True)},
        "epoch-s": {"Retry-After": str(int(instant))},
        "epoch-ms": {"Retry-After": str(int(instant * 1000))},
        "reset": {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(instant * 1000))},
    }[form]


@pytest.mark.parametrize("form", ["seconds", "http-date", "epoch-s", "epoch-ms", "reset"])
def test_429_waits_exactly_what_the_server_asked(requests_mock: rm.Mocker, form: str) -> None:
    clock = FakeClock()
    tap = make_tap(config(), clock=clock)
    calls: list[float] = []
    asked: list[float] = []

    def answer(request: Any, context: Any) -> str:
        calls.append(clock.monotonic())
        if len(calls) == 2:  # the first listing request after the connection check
            context.status_code = 429
            # The wait the headers ask for: 6 s, or to the whole second 6 s ahead.
            asked.append(6.0 if form == "seconds" else math.ceil(clock.time() + 6) - clock.time())
            context.headers = {
                **_retry_after(form, clock, 6),
                "Date": email.utils.formatdate(clock.time(), usegmt=True),
            }
            return json.dumps({"error": {"message": "Rate limit exceeded", "status": 429}})
        return json.dumps(listing([], None))

    requests_mock.get(f"{BASE}/organizations/demo/datasets", text=answer)
    out = run_sync(tap)
    assert out.records["redivis_datasets"] == []
    assert len(calls) == 3
    waited = calls[2] - calls[1]
    assert asked[0] <= waited <= asked[0] * 1.1
    assert tap.runtime.counters["redivis.http_429"] == 1


def test_spent_budget_waits_for_reset_before_sending(requests_mock: rm.Mocker) -> None:
    clock = FakeClock()
    tap = make_tap(config(organizations=["a", "b"]), clock=clock)
    sent: list[float] = []

    def answer(request: Any, context: Any) -> dict[str, Any]:
        sent.append(clock.monotonic())
        reset = int((clock.time() + 4) * 1000)
        context.headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}
        return listing([], None)

    requests_mock.get(rm.ANY, json=answer)
    run_sync(tap)
    assert len(sent) == 3  # check + two organizations, none of them answered 429
    assert all(b - a >= 4.0 for a, b in itertools.pairwise(sent))


def test_transient_failures_are_retried(requests_mock: rm.Mocker) -> None:
    requests_mock.get(
        f"{BASE}/organizations/demo/datasets",
        [
            {"json": listing([], None)},  # connection check
            {"status_code": 503, "json": {"error": {"message": "busy", "status": 503}}},
            {"status_code": 200, "text": '{"kind": "list", "results": [{"id": '},  # truncated
            {"status_code": 408, "text": "timeout"},
            {"json": listing([dataset(1)], None)},
        ],
    )
    requests_mock.get(f"{BASE}/datasets/demo.claims1%3Aye2v/tables", json=listing([], None))
    tap = make_tap(config(), clock=FakeClock())
    out = run_sync(tap)
    assert [r["id"] for r in out.records["redivis_datasets"]] == ["ds-1"]
    assert tap.runtime.counters["redivis.retries"] == 3


def test_bad_token_is_fatal_named_and_secret_free(requests_mock: rm.Mocker) -> None:
    requests_mock.get(
        rm.ANY,
        status_code=401,
        json={"error": {"message": "Invalid credentials", "status": 401}},
    )
    tap = make_tap(config(), clock=FakeClock())
    with pytest.raises(PlatformAuthError) as caught:
        run_sync(tap)
    text = str(caught.value)
    assert text.startswith("Redivis: HTTP 401")
    assert "Invalid credentials" in text
    assert TOKEN not in text
    assert len(requests_mock.request_history) == 1  # failed at the check, before any record


def test_oauth_style_error_body_is_read(requests_mock: rm.Mocker) -> None:
    requests_mock.get(
        rm.ANY,
        status_code=403,
        json={"error": "insufficient_scope", "error_description": "needs data.data"},
    )
    with pytest.raises(PlatformAuthError, match=r"needs data\.data \(insufficient_scope\)"):
        run_sync(make_tap(config(), clock=FakeClock()))


def test_one_failed_partition_does_not_stop_the_sync(
    redivis: rm.Mocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    redivis.get(
        f"{BASE}/datasets/demo.claims1%3Aye2v/tables",
        status_code=404,
        json={"error": {"message": "Dataset not found", "status": 404}},
    )
    redivis.get(f"{BASE}/datasets/demo.claims2%3Aye2v/tables", status_code=500, text="oops")
    tap = make_tap(config(max_requests_per_second=1000), clock=FakeClock())
    with pytest.raises(SyncFailedError) as caught:
        run_sync(tap)
    summary = str(caught.value)
    assert "2 partition(s) failed" in summary
    assert "dataset_reference=demo.claims1:ye2v" in summary
    assert "Dataset not found" in summary
    assert "gave up after retries" in summary
    # The healthy dataset still delivered its table and variables.
    assert tap.runtime.counters["redivis.requests"] > 0


def test_variables_of_healthy_tables_arrive_despite_failures(redivis: rm.Mocker) -> None:
    redivis.get(f"{BASE}/datasets/demo.claims1%3Aye2v/tables", status_code=404, json={})
    tap = make_tap(config(), clock=FakeClock())
    out = run_sync(tap, finish=False)
    assert len(out.records["redivis_variables"]) == 2
    assert len(tap.runtime.failures) == 1


def test_datasets_seen_only_in_overview_are_not_listed(requests_mock: rm.Mocker) -> None:
    overview = {**dataset(1), "accessLevel": "overview"}
    requests_mock.get(f"{BASE}/organizations/demo/datasets", json=listing([overview], None))
    out = run_sync(make_tap(config(), clock=FakeClock()))
    assert len(out.records["redivis_datasets"]) == 1
    assert not any("/tables" in h.path for h in requests_mock.request_history)


def test_a_403_on_one_dataset_fails_that_partition_only(redivis: rm.Mocker) -> None:
    redivis.get(
        f"{BASE}/datasets/demo.claims1%3Aye2v/tables",
        status_code=403,
        json={"error": "insufficient_scope", "error_description": "metadata access required"},
    )
    tap = make_tap(config(), clock=FakeClock())
    out = run_sync(tap, finish=False)
    assert len(out.records["redivis_variables"]) == 2
    assert [f.message for f in tap.runtime.failures] == [
        "Redivis: HTTP 403 on GET https://redivis.test/api/v1/datasets/demo.claims1%3Aye2v/"
        "tables?maxResults=100: metadata access required (insufficient_scope)"
    ]


def test_replication_start_applies_lookback() -> None:
    tap = make_tap({**config(), "start_date": "2024-05-01T10:00:00Z", "lookback_seconds": 90})
    stream = tap.streams["redivis_datasets"]
    assert isinstance(stream, PlatformStream)
    # Full-table streams have no bookmark: start_date, moved back by the lookback.
    stream.replication_key = "updatedAt"
    stream.write_starting_replication_value(None)  # what the SDK does as a sync begins
    start = stream.replication_start(None)
    assert start is not None
    assert start.isoformat() == "2024-05-01T09:58:30+00:00"
