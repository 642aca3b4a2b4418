"""Re:infer against the sandbox: completeness by key, incremental comments, resume, tenants."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from dataplatforms_sandbox import CREDENTIALS, Sandbox
from dataplatforms_sandbox.reinfer import UIPATH_PREFIX
from tap_dataplatforms.core.errors import PlatformAuthError, SyncFailedError
from tap_dataplatforms.core.http import PlatformStream
from tap_dataplatforms.tap import TapDataPlatforms
from tests.helpers import make_tap, run_sync

TOKEN = CREDENTIALS["reinfer"]["token"]
ROOMY = {"reinfer": (100_000, 60.0)}
START = "2023-06-01T00:00:00Z"
COMMENTS = "reinfer_comments"


def reinfer_config(sb: Sandbox, prefix: str = "", **extra: Any) -> dict[str, Any]:
    block = {
        "api_url": sb.base_url("reinfer") + prefix,
        "token": TOKEN,
        "max_requests_per_second": 1000,
        **extra,
    }
    return {"reinfer": block, "start_date": START}


def only(tap: TapDataPlatforms, *names: str) -> TapDataPlatforms:
    for stream in tap.streams.values():
        stream.selected = stream.name in names
    return tap


def comment_keys(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["source_id"], r["id"]) for r in records]


def run_ordered(tap: TapDataPlatforms) -> list[dict[str, Any]]:
    """Every Singer message of a sync, in the order written (a killed run's stdout is a
    prefix of this)."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        tap.preflight()
        tap.sync_all()
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


@pytest.fixture(scope="module")
def shared() -> Iterator[Sandbox]:
    sb = Sandbox(seed=11, scale=1, limits=ROOMY).start()
    yield sb
    sb.stop()


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    sb = Sandbox(seed=23, scale=1, limits=ROOMY).start()
    yield sb
    sb.stop()


@pytest.mark.untimed
def test_full_sync_equals_the_sandbox_by_key(
    shared: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    model = shared.reinfer
    inbox = model.source_named("acme-support", "inbox")
    # The data has what the test is about: thousands of comments over several sources,
    # ties, and a tie straddling the first page boundary (256).
    assert len(model.comment_keys()) > 2000
    assert inbox.comments[255].timestamp == inbox.comments[256].timestamp
    shared.clear_log()
    tap = make_tap(reinfer_config(shared))
    with caplog.at_level(logging.INFO, logger="singer_sdk.metrics"):
        out = run_sync(tap)

    got = comment_keys(out.records[COMMENTS])
    assert len(got) == len(set(got)), "duplicate comments"
    assert set(got) == model.comment_keys()
    want = {
        "reinfer_projects": {p["name"] for p in model.projects},
        "reinfer_datasets": set(model.datasets),
        "reinfer_sources": set(model.sources),
        "reinfer_streams": {s["id"] for d in model.datasets.values() for s in d.streams},
    }
    key_of = {"reinfer_projects": "name"}
    for stream, wanted in want.items():
        values = [r[key_of.get(stream, "id")] for r in out.records[stream]]
        assert sorted(values) == sorted(wanted), stream
    labellings = [(r["dataset_id"], r["uid"]) for r in out.records["reinfer_labellings"]]
    assert len(labellings) == len(set(labellings))
    assert set(labellings) == model.labelling_keys()
    assert {r["source_id"] for r in out.records["reinfer_labellings"]} == {
        s for d in model.datasets.values() for s in d.source_ids
    }

    # Sorted per source and timestamps in UTC.
    for source_id in model.sources:
        stamps = [r["timestamp"] for r in out.records[COMMENTS] if r["source_id"] == source_id]
        assert stamps == sorted(stamps)
    assert out.records[COMMENTS][0]["timestamp"].endswith("+00:00")

    # The requests: limit 256, one fixed upper bound, the cursor after the first page.
    # (An answer the default sandbox spoiled once, an HTML page or an empty body, is read
    # again: the page counts once.)
    calls = [
        e
        for e in shared.request_log("reinfer")
        if e["path"].endswith("/comments") and not e.get("glitch")
    ]
    assert all(e["status"] == 200 for e in calls)
    assert {e["query"]["limit"] for e in calls} == {"256"}
    assert len({e["query"]["to_timestamp"] for e in calls}) == 1
    firsts = [e for e in calls if "after" not in e["query"]]
    # Predictions read the comments of each source of each dataset with a model again.
    scored = [s for d in model.datasets.values() if d.latest_model for s in d.source_ids]
    assert len(firsts) == len(model.sources) + len(scored)
    assert all(e["query"]["from_timestamp"].startswith("2023-06-01T00:00:00") for e in firsts)
    assert all("from_timestamp" not in e["query"] for e in calls if "after" in e["query"])
    inbox_calls = [e for e in calls if "/inbox/" in e["path"]]
    assert len(inbox_calls) == -(-len(inbox.comments) // 256) * (1 + scored.count(inbox.id))

    # Server-Timing sits next to the client-side duration of each request.
    points = [
        json.loads(r.getMessage().split("METRIC: ", 1)[1])
        for r in caplog.records
        if "http_request_duration" in r.getMessage()
    ]
    reinfer_points = [p for p in points if p["tags"]["stream"].startswith("reinfer_")]
    assert reinfer_points
    assert all(p["tags"]["server_timing_total_ms"] > 0 for p in reinfer_points)
    counters = tap.runtime.counters
    assert counters["reinfer.server_timing_ms"] > 0
    assert counters["reinfer.client_duration_ms"] > 0


@pytest.mark.untimed
def test_uipath_tenant_prefix_and_configured_sources(shared: Sandbox) -> None:
    shared.clear_log()
    config = reinfer_config(
        shared, UIPATH_PREFIX + "/", sources=["acme-sales/leads", "acme-sales/calls"]
    )
    out = run_sync(only(make_tap(config), COMMENTS, "reinfer_sources"))
    assert set(comment_keys(out.records[COMMENTS])) == shared.reinfer.comment_keys(
        ["acme-sales/leads", "acme-sales/calls"]
    )
    assert len(out.records["reinfer_sources"]) == len(shared.reinfer.sources)
    log = shared.request_log("reinfer")
    assert log
    assert all(e["path"].startswith(UIPATH_PREFIX + "/") for e in log)
    assert all(e["status"] == 200 for e in log)


@pytest.mark.untimed
def test_unknown_configured_source_fails_after_the_others(shared: Sandbox) -> None:
    config = reinfer_config(shared, sources=["acme-sales/calls", "acme-sales/nope"])
    tap = only(make_tap(config), COMMENTS)
    out = run_sync(tap, finish=False)
    assert set(comment_keys(out.records[COMMENTS])) == shared.reinfer.comment_keys(
        ["acme-sales/calls"]
    )
    with pytest.raises(SyncFailedError, match="acme-sales/nope is not among the sources"):
        tap.finish()


@pytest.mark.untimed
def test_partitions_split_the_sources_between_processes(shared: Sandbox) -> None:
    shares = []
    for index in (0, 1):
        config = {**reinfer_config(shared), "partition": {"index": index, "count": 2}}
        out = run_sync(only(make_tap(config), COMMENTS))
        shares.append(set(comment_keys(out.records[COMMENTS])))
    assert all(shares)
    assert not shares[0] & shares[1]
    assert shares[0] | shares[1] == shared.reinfer.comment_keys()


@pytest.mark.untimed
def test_second_sync_emits_only_new_comments(sandbox: Sandbox) -> None:
    model = sandbox.reinfer
    config = reinfer_config(sandbox)
    first = run_sync(only(make_tap(config), COMMENTS))
    assert set(comment_keys(first.records[COMMENTS])) == model.comment_keys()
    state = first.states[-1]

    added = model.advance(12)
    second = run_sync(only(make_tap(config, state=copy.deepcopy(state)), COMMENTS))
    got = comment_keys(second.records[COMMENTS])
    assert set(added) <= set(got)
    # Besides the new ones, only comments at a source's bookmark instant come back.
    bookmarks = {
        p["context"]["source_id"]: p.get("replication_key_value")
        for p in state["bookmarks"][COMMENTS]["partitions"]
    }
    repeated = [r for r in second.records[COMMENTS] if (r["source_id"], r["id"]) not in added]
    assert all(r["timestamp"] == bookmarks[r["source_id"]] for r in repeated)
    assert len(repeated) <= len(model.sources) * 20

    # Nothing new: a third sync re-reads only the comments at each bookmark's instant.
    final = copy.deepcopy(second.states[-1])
    third = run_sync(only(make_tap(config, state=second.states[-1]), COMMENTS))
    last = {
        p["context"]["source_id"]: p.get("replication_key_value")
        for p in final["bookmarks"][COMMENTS]["partitions"]
    }
    assert third.records[COMMENTS]
    assert all(r["timestamp"] == last[r["source_id"]] for r in third.records[COMMENTS])


@pytest.mark.untimed
def test_killed_sync_resumes_from_the_last_state(sandbox: Sandbox) -> None:
    model = sandbox.reinfer
    config = reinfer_config(sandbox)
    messages = run_ordered(only(make_tap(config), COMMENTS))
    records = [i for i, m in enumerate(messages) if m["type"] == "RECORD"]
    inbox = model.source_named("acme-support", "inbox")
    # Kill in the middle of the largest source, between two STATE messages.
    cut = records[700]
    assert messages[cut]["record"]["source_id"] == inbox.id
    delivered = [
        (m["record"]["source_id"], m["record"]["id"])
        for m in messages[:cut]
        if m["type"] == "RECORD"
    ]
    state = next(m["value"] for m in reversed(messages[:cut]) if m["type"] == "STATE")

    resumed = run_sync(only(make_tap(config, state=state), COMMENTS))
    again = comment_keys(resumed.records[COMMENTS])
    assert set(delivered) | set(again) == model.comment_keys()
    assert len(again) == len(set(again))
    re_read = Counter(source for source, cid in set(delivered) & set(again))
    # At most one page per source, plus comments tied with the bookmark's instant.
    assert re_read
    assert all(count <= 256 + 20 for count in re_read.values()), re_read


@pytest.mark.untimed
def test_private_routes_missing_are_reported_once_and_skipped(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox.reinfer.private_routes = False
    tap = make_tap(reinfer_config(sandbox))
    with caplog.at_level(logging.WARNING):
        out = run_sync(tap)  # finish() does not raise: nothing failed
    assert len(out.records["reinfer_sources"]) == len(sandbox.reinfer.sources)
    assert len(out.records["reinfer_streams"]) > 0
    for stream in ("reinfer_projects", COMMENTS, "reinfer_labellings", "reinfer_predictions"):
        assert out.records[stream] == []
        warnings = [r for r in caplog.records if f"{stream} skipped" in r.getMessage()]
        assert len(warnings) == 1, stream
        assert "404 Not Found" in warnings[0].getMessage()
    private = [e for e in sandbox.request_log("reinfer") if "/_private/" in e["path"]]
    # One request per route, then the stream's remaining partitions are skipped.
    assert len(private) == 4


@pytest.mark.untimed
def test_throttling_and_server_errors_are_waited_out(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(PlatformStream, "retry_base_seconds", 0.01)
    # Re:infer documents no wait hint: a bare 429, then a 503, both on comment pages.
    sandbox.force("reinfer", status=429, count=2, path_contains="/calls/comments")
    sandbox.force("reinfer", status=503, count=1, path_contains="/leads/comments")
    out = run_sync(only(make_tap(reinfer_config(sandbox)), COMMENTS))
    assert set(comment_keys(out.records[COMMENTS])) == sandbox.reinfer.comment_keys()
    statuses = Counter(e["status"] for e in sandbox.request_log("reinfer"))
    assert statuses[429] == 2
    assert statuses[503] == 1


@pytest.mark.untimed
def test_bad_token_fails_before_any_record_with_the_platform_message(sandbox: Sandbox) -> None:
    config = reinfer_config(sandbox, token="wrong-token-98765")
    with pytest.raises(PlatformAuthError) as caught:
        run_sync(make_tap(config))
    text = str(caught.value)
    assert "Re:infer: HTTP 401" in text
    assert "the API token is missing, invalid or expired" in text
    assert "wrong-token-98765" not in text
    (entry,) = sandbox.request_log("reinfer")
    assert entry["path"] == "/auth/user"


@pytest.mark.untimed
def test_sandbox_rejects_what_the_api_rejects(shared: Sandbox) -> None:
    url = shared.base_url("reinfer") + "/api/_private/sources/acme-sales/calls/comments"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    too_big = requests.get(url, params={"limit": 257}, headers=auth, timeout=10)
    assert too_big.status_code == 400
    assert too_big.json()["status"] == "error"
    plus = requests.get(f"{url}?from_timestamp=2024-01-01T00:00:00+00:00", headers=auth, timeout=10)
    assert plus.status_code == 400  # the unescaped `+` arrived as a space
    escaped = requests.get(
        url, params={"from_timestamp": "2024-01-01T00:00:00+00:00"}, headers=auth, timeout=10
    )
    assert escaped.status_code == 200
    assert escaped.headers["Server-Timing"].startswith("total;dur=")
    old_header = requests.get(url, headers={"X-Auth-Token": TOKEN}, timeout=10)
    assert old_header.status_code == 401
    unknown = requests.get(
        shared.base_url("reinfer") + "/api/v1/nonexistent", headers=auth, timeout=10
    )
    assert unknown.json() == {"status": "error", "message": "404 Not Found"}
