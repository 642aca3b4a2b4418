"""InVision against the sandbox: triggered runs, the incremental execution log, tables."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from dataplatforms_sandbox import CREDENTIALS, Sandbox
from tap_dataplatforms.core import once
from tap_dataplatforms.core.errors import PlatformUnavailableError, SyncFailedError
from tap_dataplatforms.core.http import PlatformStream
from tap_dataplatforms.core.timestamps import parse_datetime
from tests.helpers import make_tap, run_sync

KEY = CREDENTIALS["invision"]["api_key"]


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    sb = Sandbox(seed=5, scale=1).start()
    # Runs last 0.15-0.4 s instead of 0.3-0.8 s.
    sb.invision.speed = 0.5
    sb.invision.pending_seconds = 0.05
    yield sb
    sb.stop()


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PlatformStream, "retry_base_seconds", 0.001)
    # A start whose answer is lost is looked for in the log for 0.5 s, not 10 s.
    monkeypatch.setattr(once, "GRACE_SECONDS", 0.5)


def invision_config(sb: Sandbox, **extra: Any) -> dict[str, Any]:
    top = {k: extra.pop(k) for k in ("start_date", "max_concurrency") if k in extra}
    block = {
        "api_url": sb.base_url("invision"),
        "api_key": KEY,
        "poll_interval_seconds": 0.02,
        "await_timeout_seconds": 10,
        "max_requests_per_second": 500,
    }
    block.update(extra)
    return {**top, "invision": block}


def select_only(tap: Any, *names: str) -> None:
    for stream in tap.streams.values():
        stream.selected = stream.name in names


def days_ago(days: float) -> str:
    moment = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days)
    return moment.isoformat()


# -- data flow runs ------------------------------------------------------------------


def test_three_triggered_flows_one_failing(sandbox: Sandbox) -> None:
    model = sandbox.invision
    flows = [*model.succeeding[:2], model.flow_named("Failed")]
    ids = [f.id for f in flows]
    cfg = invision_config(sandbox, dataflow_ids=ids, trigger_dataflows=True, max_concurrency=3)
    tap = make_tap(cfg)
    select_only(tap, "invision_dataflow_runs")
    out = run_sync(tap, finish=False)

    records = out.records["invision_dataflow_runs"]
    assert sorted(r["dataflow_id"] for r in records) == sorted(ids)
    by_flow = {r["dataflow_id"]: r for r in records}
    for flow in flows:
        record = by_flow[flow.id]
        assert record["status"] == flow.outcome
        assert model.runs[record["run_id"]].flow.id == flow.id
        assert record["polls"] >= 1
        assert record["timed_out"] is False
        assert parse_datetime(record["finished_at"]) >= parse_datetime(record["started_at"])
        assert record["duration_seconds"] >= 0

    log = sandbox.request_log(platform="invision")
    starts = [e for e in log if e["method"] == "POST"]
    assert len(starts) == 3
    # Flows run side by side: every flow started before the first run could end.
    first_end = min(run.ends_at or 0 for run in model.runs.values())
    assert max(e["time"] for e in starts) < first_end
    for entry in log:
        assert "await" not in entry["query"]
        assert "api_key" not in entry["query"]
        assert entry["request_headers"]["x-api-key"] == "<redacted>"

    with pytest.raises(SyncFailedError) as caught:
        tap.finish()
    summary = str(caught.value)
    assert "1 partition(s) failed" in summary
    assert f"dataflow_id={model.flow_named('Failed').id}" in summary
    for flow in flows[:2]:
        assert flow.id not in summary


def test_the_events_of_started_runs_reach_the_log(sandbox: Sandbox) -> None:
    flow = sandbox.invision.succeeding[0]
    cfg = invision_config(
        sandbox, dataflow_ids=[flow.id], trigger_dataflows=True, start_date=days_ago(1)
    )
    tap = make_tap(cfg)
    select_only(tap, "invision_dataflow_runs", "invision_execution_log")
    first = run_sync(tap)
    [run] = first.records["invision_dataflow_runs"]
    # The log is read after the runs, up to the last whole second: an event of the
    # current second comes with the next sync.
    time.sleep(1.05 - time.time() % 1)
    tap = make_tap(cfg, state=first.states[-1])
    select_only(tap, "invision_execution_log")
    second = run_sync(tap)
    rows = first.records["invision_execution_log"] + second.records["invision_execution_log"]
    # ``data`` is the event text, or the structured event with its text as ``message``.
    said = [r["data"] if isinstance(r["data"], str) else r["data"]["message"] for r in rows]
    texts = list(dict.fromkeys(text for text in said if run["run_id"] in text))
    assert len(texts) == 2
    assert "started" in texts[0]
    assert "completed" in texts[1]


@pytest.mark.untimed
def test_the_command_line_exits_non_zero_naming_the_failed_flow(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    model = sandbox.invision
    failing = model.flow_named("Failed")
    ids = [model.succeeding[0].id, failing.id]
    cfg = invision_config(sandbox, dataflow_ids=ids, trigger_dataflows=True)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    result = subprocess.run(
        [sys.executable, "-m", "tap_dataplatforms.tap", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 3  # some partitions failed, the rest written
    records = [json.loads(line) for line in result.stdout.splitlines()]
    statuses = {
        m["record"]["dataflow_id"]: m["record"]["status"]
        for m in records
        if m["type"] == "RECORD" and m["stream"] == "invision_dataflow_runs"
    }
    assert statuses == {ids[0]: "Succeeded", failing.id: "Failed"}
    errors = [line for line in result.stderr.splitlines() if "| ERROR" in line]
    assert any(f"dataflow_id={failing.id}" in line for line in errors[-2:])
    assert KEY not in result.stdout + result.stderr


def test_nothing_is_started_when_trigger_dataflows_is_false(sandbox: Sandbox) -> None:
    ids = list(sandbox.invision.flows)
    cfg = invision_config(sandbox, dataflow_ids=ids, start_date=days_ago(2), tables=["GL_Actuals"])
    out = run_sync(make_tap(cfg))
    assert out.records["invision_dataflow_runs"] == []
    assert out.records["invision_execution_log"]
    assert sandbox.invision.runs == {}
    assert [e for e in sandbox.request_log(platform="invision") if e["method"] == "POST"] == []


def test_a_run_that_never_finishes_times_out(sandbox: Sandbox) -> None:
    hang = sandbox.invision.flow_named("Hang")
    cfg = invision_config(
        sandbox, dataflow_ids=[hang.id], trigger_dataflows=True, await_timeout_seconds=1
    )
    tap = make_tap(cfg)
    select_only(tap, "invision_dataflow_runs")
    out = run_sync(tap, finish=False)
    [record] = out.records["invision_dataflow_runs"]
    assert record["status"] == "TimedOut"
    assert record["timed_out"] is True
    assert record["finished_at"] is None
    with pytest.raises(SyncFailedError, match=hang.id):
        tap.finish()


def test_an_unknown_flow_fails_its_partition_with_the_platform_message(
    sandbox: Sandbox,
) -> None:
    good = sandbox.invision.succeeding[0]
    cfg = invision_config(sandbox, dataflow_ids=["no-such-flow", good.id], trigger_dataflows=True)
    tap = make_tap(cfg)
    select_only(tap, "invision_dataflow_runs")
    out = run_sync(tap, finish=False)
    assert [r["status"] for r in out.records["invision_dataflow_runs"]] == ["Succeeded"]
    with pytest.raises(SyncFailedError) as caught:
        tap.finish()
    assert "dataflow_id=no-such-flow" in str(caught.value)
    assert "Data flow with id 'no-such-flow' does not exist." in str(caught.value)


def test_an_unknown_flow_id_costs_one_start_and_fails_naming_it(sandbox: Sandbox) -> None:
    """InVision answers an unknown data flow id with the same 500 as a lost answer; the
    monitoring log shows no run of it, so the start is not sent a second time."""
    unknown = "0b6f3c1e-9d2a-4e57-8a11-5c0ffee0d00d"
    assert unknown not in sandbox.invision.flows
    cfg = invision_config(sandbox, dataflow_ids=[unknown], trigger_dataflows=True)
    tap = make_tap(cfg)
    select_only(tap, "invision_dataflow_runs")
    sandbox.clear_log()
    out = run_sync(tap, finish=False)
    assert out.records["invision_dataflow_runs"] == []
    starts = [
        e
        for e in sandbox.request_log(platform="invision")
        if e["method"] == "POST" and unknown in e["path"]
    ]
    assert len(starts) == 1
    with pytest.raises(SyncFailedError) as caught:
        tap.finish()
    message = str(caught.value)
    assert f"dataflow_id={unknown}" in message
    assert "not sent again" in message
    assert "InVision answers an unknown data flow id like any failure" in message


def test_a_start_whose_answer_is_lost_is_adopted_not_sent_again(sandbox: Sandbox) -> None:
    """The default sandbox loses the answer to the first start of a flow after starting
    its run (dropped, cut mid-body, 500): each flow runs once, and its run is followed."""
    model = sandbox.invision
    flows = model.succeeding[:4]
    cfg = invision_config(
        sandbox, dataflow_ids=[f.id for f in flows], trigger_dataflows=True, max_concurrency=4
    )
    tap = make_tap(cfg)
    select_only(tap, "invision_dataflow_runs")
    out = run_sync(tap)
    assert sorted(how for _, how in model.lost_start_answers) == ["5xx", "cut", "drop"]
    assert model.started_per_flow() == {f.id: 1 for f in flows}
    records = out.records["invision_dataflow_runs"]
    assert sorted(r["dataflow_id"] for r in records) == sorted(f.id for f in flows)
    for record in records:
        assert model.runs[record["run_id"]].flow.id == record["dataflow_id"]
        assert record["status"] == "Succeeded"
    posts = [e for e in sandbox.request_log(platform="invision") if e["method"] == "POST"]
    assert len(posts) == len(flows)


def test_a_lost_start_is_not_sent_again_when_the_log_cannot_tell(sandbox: Sandbox) -> None:
    model = sandbox.invision
    flow = model.succeeding[0]
    sandbox.force("invision", status=500, count=100, path_contains="/monitoring")
    cfg = invision_config(sandbox, dataflow_ids=[flow.id], trigger_dataflows=True)
    tap = make_tap(cfg)
    select_only(tap, "invision_dataflow_runs")
    out = run_sync(tap, finish=False)
    assert model.lost_start_answers == [(flow.id, "drop")]
    assert model.started_per_flow() == {flow.id: 1}
    assert out.records["invision_dataflow_runs"] == []
    with pytest.raises(SyncFailedError) as caught:
        tap.finish()
    assert f"dataflow_id={flow.id}" in str(caught.value)
    assert "cannot be looked up" in str(caught.value)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_through_seeded_faults_no_flow_is_started_twice(sandbox: Sandbox, seed: int) -> None:
    model = sandbox.invision
    flows = model.succeeding[:4]
    sandbox.set_faults(0.15, seed=seed, slow_seconds=0.0)
    cfg = invision_config(
        sandbox, dataflow_ids=[f.id for f in flows], trigger_dataflows=True, max_concurrency=4
    )
    tap = make_tap(cfg)
    select_only(tap, "invision_dataflow_runs")
    out = run_sync(tap, finish=False)
    started = model.started_per_flow()
    assert set(started.values()) <= {1}
    followed = {r["dataflow_id"]: r for r in out.records["invision_dataflow_runs"]}
    for record in followed.values():
        assert model.runs[record["run_id"]].flow.id == record["dataflow_id"]
    # A flow without a record, or whose run was lost track of, is named in the failure.
    unfinished = [f.id for f in flows if followed.get(f.id, {}).get("status") != "Succeeded"]
    if unfinished:
        with pytest.raises(SyncFailedError) as caught:
            tap.finish()
        assert all(flow_id in str(caught.value) for flow_id in unfinished)
    assert sandbox.fault_counts()["invision"]


# -- execution log -------------------------------------------------------------------


def test_execution_log_is_complete_then_incremental(sandbox: Sandbox) -> None:
    model = sandbox.invision
    cfg = invision_config(sandbox, start_date=days_ago(45))
    tap = make_tap(cfg)
    select_only(tap, "invision_execution_log")
    first = run_sync(tap)
    rows = first.records["invision_execution_log"]
    ids = [r["rowid"] for r in rows]
    assert len(ids) == len(set(ids))
    assert set(ids) == {r["rowid"] for r in model.execution_rows()}
    moments = [parse_datetime(r["timestamputc"]) for r in rows]
    assert moments == sorted(moments)
    assert all(r["timestamputc"].endswith("+00:00") for r in rows)
    assert {r["logevent"] for r in rows} == {"DataFlowExecution"}
    # 45 days in windows of at most one day, plus the check's minute.
    assert len(sandbox.request_log(platform="invision")) == 1 + 46

    state = first.states[-1]
    bookmark = state["bookmarks"]["invision_execution_log"]["replication_key_value"]
    assert bookmark == max(r["timestamputc"] for r in rows)
    added = model.advance(rows=6, now=time.time() - 2)

    tap = make_tap(cfg, state=state)
    select_only(tap, "invision_execution_log")
    second = run_sync(tap)
    again = second.records["invision_execution_log"]
    added_ids = {r["rowid"] for r in added}
    assert added_ids <= {r["rowid"] for r in again}
    for row in again:
        if row["rowid"] not in added_ids:
            assert row["timestamputc"] == bookmark  # only rows sharing the bookmark's instant
    assert len(again) <= len(added_ids) + sum(1 for r in rows if r["timestamputc"] == bookmark)


def test_an_interrupted_log_sync_resumes_from_its_last_state(sandbox: Sandbox) -> None:
    cfg = invision_config(sandbox, start_date=days_ago(20))
    tap = make_tap(cfg)
    select_only(tap, "invision_execution_log")
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        tap.preflight()
        tap.sync_all()
    messages = [json.loads(line) for line in buffer.getvalue().splitlines()]
    records = [m for m in messages if m["type"] == "RECORD"]
    everything = {m["record"]["rowid"] for m in records}
    # Killed after 60% of the records: keep what was written up to there.
    cut = messages.index(records[int(len(records) * 0.6)])
    kept = messages[:cut]
    delivered = [m["record"]["rowid"] for m in kept if m["type"] == "RECORD"]
    state = [m["value"] for m in kept if m["type"] == "STATE"][-1]

    tap = make_tap(cfg, state=state)
    select_only(tap, "invision_execution_log")
    resumed = [r["rowid"] for r in run_sync(tap).records["invision_execution_log"]]
    assert set(delivered) | set(resumed) == everything
    # Re-read: at most the window that was cut (about a day of rows).
    per_day = len(everything) / 20
    assert len(set(delivered) & set(resumed)) <= 3 * per_day


def test_a_transient_500_on_the_log_is_retried(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = days_ago(3)
    tap = make_tap(invision_config(sandbox, start_date=start))
    select_only(tap, "invision_execution_log")
    tap.preflight()
    monkeypatch.setattr(tap, "preflight", lambda: None)  # the 500s are for the sync
    sandbox.force("invision", status=500, count=2, path_contains="monitoring")
    out = run_sync(tap)
    expected = {
        r["rowid"]
        for r in sandbox.invision.execution_rows()
        if parse_datetime(r["timestamputc"]) >= parse_datetime(start)
    }
    assert {r["rowid"] for r in out.records["invision_execution_log"]} == expected
    assert tap.runtime.counters["invision.retries"] == 2


def test_a_tight_limit_is_never_exceeded(sandbox: Sandbox) -> None:
    sandbox.set_limit("invision", limit=5, window_seconds=1.0)
    cfg = invision_config(sandbox, start_date=days_ago(8), max_requests_per_second=4)
    tap = make_tap(cfg)
    select_only(tap, "invision_execution_log")
    out = run_sync(tap)
    log = sandbox.request_log(platform="invision")
    assert len(log) == 1 + 9
    assert [e for e in log if e["status"] == 429] == []
    assert out.records["invision_execution_log"]


def test_a_bad_key_fails_fast_before_any_record(sandbox: Sandbox) -> None:
    cfg = invision_config(sandbox, start_date=days_ago(3), api_key="wrong-key")
    tap = make_tap(cfg)
    with pytest.raises(PlatformUnavailableError) as caught:
        run_sync(tap)
    assert "Invalid or missing API key." in str(caught.value)
    assert "wrong-key" not in str(caught.value)
    assert len(sandbox.request_log(platform="invision")) == 2


# -- tables --------------------------------------------------------------------------


def test_tables_equal_the_sandbox_and_an_unknown_one_fails(sandbox: Sandbox) -> None:
    model = sandbox.invision
    tables = ["GL_Actuals", "Cost Centers", "Prosjekt_Øst", "Missing"]
    tap = make_tap(invision_config(sandbox, tables=tables))
    names = [n for n in tap.streams if n.startswith("invision_table__")]
    select_only(tap, *names)
    out = run_sync(tap, finish=False)

    gl = out.records["invision_table__gl_actuals"]
    assert len(gl) == len(model.tables["GL_Actuals"])
    assert gl[0]["PostedAt"] == model.tables["GL_Actuals"][0]["PostedAt"] + "+00:00"
    assert [r["Account"] for r in gl] == [r["Account"] for r in model.tables["GL_Actuals"]]
    assert out.records["invision_table__cost_centers"] == model.tables["Cost Centers"]
    assert out.records["invision_table__prosjekt_ost"] == model.tables["Prosjekt_Øst"]

    properties = out.schemas["invision_table__gl_actuals"]["properties"]
    assert properties["Amount"] == {"type": ["number", "null"]}
    assert properties["Quantity"] == {"type": ["number", "null"]}  # whole, declared number
    assert properties["Approved"] == {"type": ["boolean", "null"]}
    assert properties["PostedAt"] == {"type": ["string", "null"], "format": "date-time"}
    assert all("null" in spec["type"] for spec in properties.values())

    with pytest.raises(SyncFailedError) as caught:
        tap.finish()
    assert "invision_table__missing [table=Missing]" in str(caught.value)
    assert "Invalid object name 'Missing'." in str(caught.value)


# -- the sandbox itself --------------------------------------------------------------


def test_sandbox_models_the_documented_api(sandbox: Sandbox) -> None:
    base = sandbox.base_url("invision")
    flow = sandbox.invision.succeeding[0]
    # The documented query-parameter key works too, and await=true blocks until the end.
    started = requests.post(
        f"{base}/api/pub/v1/dataflows/{flow.id}/start",
        params={"api_key": KEY, "await": "true"},
        timeout=10,
    )
    assert started.json()["status"] == "Succeeded"
    status = requests.get(
        f"{base}/api/pub/v1/dataflows/{flow.id}/runs/{started.json()['runId']}/status",
        headers={"x-api-key": KEY},
        timeout=10,
    )
    assert status.json() == started.json()
    bad = requests.get(f"{base}/api/v1/monitoring", headers={"x-api-key": "nope"}, timeout=10)
    assert bad.status_code == 500
    media = requests.post(
        f"{base}/api/pub/v1/dataflows/{flow.id}/start",
        headers={"x-api-key": KEY, "Content-Type": "text/plain"},
        data="x",
        timeout=10,
    )
    assert media.status_code == 415
