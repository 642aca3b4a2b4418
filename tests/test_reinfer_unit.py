"""Re:infer streams against requests-mock: tenant URLs, envelopes, cursors, label names."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests_mock as rm

from tap_dataplatforms.core.errors import PlatformAuthError, SyncFailedError
from tap_dataplatforms.core.http import PlatformStream
from tap_dataplatforms.reinfer.client import server_timing_total_ms
from tap_dataplatforms.tap import TapDataPlatforms
from tests.helpers import FakeClock, make_tap, run_sync

DIRECT = "https://acme.reinfer.io"
UIPATH = "https://cloud.uipath.com/acme-org/acme-tenant/reinfer_"
TOKEN = "reinfer-unit-token-5678"
INBOX = {"id": "src-1", "owner": "acme", "name": "inbox", "created_at": "2023-03-01T10:00:00Z"}
CALLS = {"id": "src-2", "owner": "acme", "name": "calls"}
DATASET = {
    "id": "ds-1",
    "owner": "acme",
    "name": "billing",
    "source_ids": ["src-1", "src-2"],
    "created": "2023-03-10T12:00:00.000000+00:00",
    "last_modified": "2024-04-30T10:15:00.000000+02:00",
}


def config(base: str = DIRECT, **extra: Any) -> dict[str, Any]:
    return {"reinfer": {"api_url": base, "token": TOKEN, **extra}}


def only(tap: TapDataPlatforms, *names: str) -> TapDataPlatforms:
    for stream in tap.streams.values():
        stream.selected = stream.name in names
    return tap


def comment(n: int, ts: str) -> dict[str, Any]:
    return {"id": f"msg-{n}", "uid": f"u.msg-{n}", "timestamp": ts, "messages": []}


def query(request: Any) -> dict[str, list[str]]:
    """The query as the server decodes it (a bare `+` would become a space)."""
    return parse_qs(urlsplit(request.url).query)


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PlatformStream, "retry_base_seconds", 0.001)


def mock_base(
    m: rm.Mocker, base: str = DIRECT, sources: list[dict[str, Any]] | None = None
) -> None:
    m.get(f"{base}/auth/user", json={"status": "ok", "user": {"id": "u1"}})
    m.get(f"{base}/api/v1/sources", json={"status": "ok", "sources": sources or [INBOX, CALLS]})
    m.get(f"{base}/api/v1/datasets", json={"status": "ok", "datasets": [DATASET]})


@pytest.mark.parametrize("base", [DIRECT, UIPATH, UIPATH + "/"])
def test_both_tenant_styles_keep_their_prefix(requests_mock: rm.Mocker, base: str) -> None:
    root = base.rstrip("/")
    mock_base(requests_mock, root)
    requests_mock.get(
        f"{root}/api/_private/projects",
        json={
            "status": "ok",
            "projects": [{"name": "acme", "created_at": "2023-02-01T09:00:00+01:00"}],
        },
    )
    out = run_sync(
        only(make_tap(config(base), clock=FakeClock()), "reinfer_projects", "reinfer_datasets")
    )
    assert out.records["reinfer_projects"] == [
        {"name": "acme", "created_at": "2023-02-01T08:00:00+00:00"}
    ]
    (dataset,) = out.records["reinfer_datasets"]
    assert dataset["last_modified"] == "2024-04-30T08:15:00+00:00"
    for call in requests_mock.request_history:
        assert call.url.startswith(root + "/")
        assert call.headers["Authorization"] == f"Bearer {TOKEN}"
        assert "X-Auth-Token" not in call.headers
    assert requests_mock.request_history[0].url == f"{root}/auth/user"


def test_bad_token_fails_at_the_check_with_the_platform_message(requests_mock: rm.Mocker) -> None:
    requests_mock.get(
        f"{DIRECT}/auth/user",
        status_code=401,
        json={"status": "error", "message": "Invalid API token"},
    )
    with pytest.raises(PlatformAuthError, match=r"Re:infer: HTTP 401.*: Invalid API token$"):
        run_sync(make_tap(config(), clock=FakeClock()))


def test_comment_window_cursor_and_encoding(requests_mock: rm.Mocker) -> None:
    mock_base(requests_mock, sources=[INBOX])
    pages = {
        None: {"comments": [comment(1, "2024-05-01T10:00:00.000000+00:00")], "continuation": "c1"},
        # An empty page that still has a continuation is not the end.
        "c1": {"comments": [], "continuation": "c2"},
        "c2": {
            "comments": [
                comment(2, "2024-05-01T12:00:00.000000+02:00"),
                comment(3, "2024-05-01T10:30:00.000000+00:00"),
            ],
            "continuation": None,
        },
    }

    def respond(request: Any, context: Any) -> dict[str, Any]:
        after = query(request).get("after", [None])[0]
        return {"status": "ok", **pages[after]}

    url = f"{DIRECT}/api/_private/sources/acme/inbox/comments"
    requests_mock.get(url, json=respond)
    state = {
        "bookmarks": {
            "reinfer_comments": {
                "partitions": [
                    {
                        "context": {
                            "source_id": "src-1",
                            "project": "acme",
                            "source_name": "inbox",
                        },
                        "replication_key": "timestamp",
                        "replication_key_value": "2024-05-01T09:00:00+00:00",
                    }
                ]
            }
        }
    }
    clock = FakeClock()
    tap = make_tap({**config(), "lookback_seconds": 60}, clock=clock, state=state)
    out = run_sync(only(tap, "reinfer_comments"))

    records = out.records["reinfer_comments"]
    assert [(r["source_id"], r["id"]) for r in records] == [
        ("src-1", "msg-1"),
        ("src-1", "msg-2"),
        ("src-1", "msg-3"),
    ]
    assert records[1]["timestamp"] == "2024-05-01T10:00:00+00:00"
    assert (records[0]["project"], records[0]["source_name"]) == ("acme", "inbox")
    calls = [h for h in requests_mock.request_history if h.url.startswith(url)]
    assert len(calls) == 3
    first, *rest = calls
    assert "%2B00%3A00" in first.url  # the offset survives the query string
    assert query(first)["from_timestamp"] == ["2024-05-01T08:59:00+00:00"]
    assert query(first)["limit"] == ["256"]
    assert "after" not in query(first)
    assert [query(c)["after"] for c in rest] == [["c1"], ["c2"]]
    assert all("from_timestamp" not in query(c) for c in rest)
    uppers = {query(c)["to_timestamp"][0] for c in calls}
    # One upper bound for every page: the fake clock's time when the partition started
    # (a paced request or two after the clock's start).
    assert len(uppers) == 1
    assert next(iter(uppers)).startswith("2027-01-15T08:00:00")
    partition = out.states[-1]["bookmarks"]["reinfer_comments"]["partitions"][0]
    assert partition["replication_key_value"] == "2024-05-01T10:30:00+00:00"


def test_comments_out_of_order_warn_instead_of_aborting(
    requests_mock: rm.Mocker, caplog: pytest.LogCaptureFixture
) -> None:
    mock_base(requests_mock, sources=[INBOX])
    requests_mock.get(
        f"{DIRECT}/api/_private/sources/acme/inbox/comments",
        json={
            "status": "ok",
            "comments": [
                comment(1, "2024-05-01T10:00:00Z"),
                comment(2, "2024-05-01T09:00:00Z"),
                comment(3, "2024-05-01T09:30:00Z"),
            ],
            "continuation": None,
        },
    )
    out = run_sync(only(make_tap(config(), clock=FakeClock()), "reinfer_comments"))
    assert len(out.records["reinfer_comments"]) == 3
    assert [r for r in caplog.records if "not in ascending timestamp order" in r.getMessage()]
    partition = out.states[-1]["bookmarks"]["reinfer_comments"]["partitions"][0]
    # Never past a comment that came after it: the next sync re-reads rather than skips.
    assert partition["replication_key_value"] == "2024-05-01T09:30:00+00:00"


def test_one_source_failing_does_not_stop_the_others(requests_mock: rm.Mocker) -> None:
    mock_base(requests_mock)
    requests_mock.get(
        f"{DIRECT}/api/_private/sources/acme/inbox/comments",
        status_code=403,
        json={"status": "error", "message": "You do not have permission on project 'acme'"},
    )
    requests_mock.get(
        f"{DIRECT}/api/_private/sources/acme/calls/comments",
        [
            {"status_code": 502, "text": "<html><body>Bad gateway</body></html>"},
            {"status_code": 409, "json": {"status": "error", "message": "Conflict"}},
            {
                "json": {
                    "status": "ok",
                    "comments": [comment(1, "2024-05-01T10:00:00Z")],
                    "continuation": None,
                }
            },
        ],
    )
    tap = only(make_tap(config(), clock=FakeClock()), "reinfer_comments")
    out = run_sync(tap, finish=False)
    assert [(r["source_id"], r["id"]) for r in out.records["reinfer_comments"]] == [
        ("src-2", "msg-1")
    ]
    with pytest.raises(SyncFailedError) as caught:
        tap.finish()
    text = str(caught.value)
    assert "reinfer_comments [acme/inbox]: Re:infer: HTTP 403" in text
    assert text.rstrip().endswith("You do not have permission on project 'acme'")
    assert "calls" not in text


def test_private_route_404s(requests_mock: rm.Mocker, caplog: pytest.LogCaptureFixture) -> None:
    mock_base(requests_mock)
    # A bare 404 is an unknown path: reported once, the stream's other partitions skipped.
    requests_mock.get(
        f"{DIRECT}/api/_private/datasets/acme/billing/labellings",
        status_code=404,
        json={"message": "404 Not Found", "status": "error"},
    )
    # A 404 naming the source is about that source: a partition failure.
    requests_mock.get(
        f"{DIRECT}/api/_private/sources/acme/inbox/comments",
        status_code=404,
        json={"status": "error", "message": "Source 'acme/inbox' does not exist"},
    )
    requests_mock.get(
        f"{DIRECT}/api/_private/sources/acme/calls/comments",
        json={"status": "ok", "comments": [], "continuation": None},
    )
    tap = only(make_tap(config(), clock=FakeClock()), "reinfer_comments", "reinfer_labellings")
    out = run_sync(tap, finish=False)
    assert out.records["reinfer_labellings"] == []
    labelling_calls = [h for h in requests_mock.request_history if "/labellings" in h.url]
    assert len(labelling_calls) == 1
    skipped = [r for r in caplog.records if "reinfer_labellings skipped" in r.getMessage()]
    assert len(skipped) == 1
    with pytest.raises(SyncFailedError) as caught:
        tap.finish()
    assert "1 partition(s) failed" in str(caught.value)
    assert "Source 'acme/inbox' does not exist" in str(caught.value)


def labelling(n: int, name: Any, predicted: Any) -> dict[str, Any]:
    return {
        "comment": {"id": f"msg-{n}", "uid": f"src.msg-{n}", "timestamp": "2024-05-01T10:00:00Z"},
        "labelling": [
            {
                "group": "default",
                "assigned": [{"name": name, "sentiment": "negative"}],
                "dismissed": [],
                "predicted": [{"name": predicted, "sentiment": "positive", "probability": 0.9}],
            }
        ],
    }


def test_labellings_page_until_an_empty_page(requests_mock: rm.Mocker) -> None:
    mock_base(requests_mock)
    pages = {
        ("src-1", None): {
            "results": [labelling(1, ["Billing", "Refund"], ["Billing"])],
            "after": "a1",
        },
        ("src-1", "a1"): {
            "results": [labelling(2, "Delivery > Late", ["Delivery", "Late"])],
            "after": "a2",
        },
        # `after` is still sent: only the empty page ends the listing.
        ("src-1", "a2"): {"results": [], "after": "a2"},
        ("src-2", None): {"results": [], "after": "b0"},
    }

    def respond(request: Any, context: Any) -> dict[str, Any]:
        qs = query(request)
        return {"status": "ok", **pages[(qs["source_id"][0], qs.get("after", [None])[0])]}

    requests_mock.get(f"{DIRECT}/api/_private/datasets/acme/billing/labellings", json=respond)
    out = run_sync(only(make_tap(config(), clock=FakeClock()), "reinfer_labellings"))
    first, second = out.records["reinfer_labellings"]
    assert (first["dataset_id"], first["uid"], first["source_id"]) == ("ds-1", "src.msg-1", "src-1")
    assert second["uid"] == "src.msg-2"
    group = first["labelling"][0]
    assert group["assigned"][0]["name"] == "Billing > Refund"
    assert group["assigned"][0]["name_parts"] == ["Billing", "Refund"]
    assert group["predicted"][0]["name"] == "Billing"
    assert second["labelling"][0]["predicted"][0]["name"] == "Delivery > Late"
    assert second["labelling"][0]["assigned"][0]["name_parts"] == ["Delivery", "Late"]
    assert first["comment"]["timestamp"] == "2024-05-01T10:00:00+00:00"
    calls = [query(h) for h in requests_mock.request_history if "/labellings" in h.url]
    assert len(calls) == 4
    assert all(c["return_predictions"] == ["true"] for c in calls)


def test_labelling_cursor_that_does_not_move_fails_the_partition(
    requests_mock: rm.Mocker,
) -> None:
    mock_base(requests_mock)
    requests_mock.get(
        f"{DIRECT}/api/_private/datasets/acme/billing/labellings",
        json={"status": "ok", "results": [labelling(1, "A", "A")], "after": "same"},
    )
    tap = only(make_tap(config(datasets=["acme/billing"]), clock=FakeClock()), "reinfer_labellings")
    run_sync(tap, finish=False)
    assert len([h for h in requests_mock.request_history if "/labellings" in h.url]) == 4
    with pytest.raises(SyncFailedError, match="did not advance"):
        tap.finish()


def test_configured_datasets_restrict_streams(requests_mock: rm.Mocker) -> None:
    mock_base(requests_mock)
    tap = only(
        make_tap(config(datasets=["acme/other"]), clock=FakeClock()),
        "reinfer_datasets",
        "reinfer_streams",
    )
    out = run_sync(tap, finish=False)
    assert len(out.records["reinfer_datasets"]) == 1  # the listing itself is complete
    assert out.records["reinfer_streams"] == []
    assert not [h for h in requests_mock.request_history if "/streams" in h.url]
    with pytest.raises(SyncFailedError, match="acme/other is not among the datasets"):
        tap.finish()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("total;dur=37.7", 37.7),
        ('db;dur=3.5, total;desc="All";dur=12', 12.0),
        ("Total; dur=5", 5.0),
        ("db;dur=3", None),
        ("total", None),
        (None, None),
    ],
)
def test_server_timing_total(header: str | None, expected: float | None) -> None:
    assert server_timing_total_ms(header) == expected
