"""Dexi against the sandbox: completeness by key, incremental syncs, resume, files."""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import io
import json
import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from dataplatforms_sandbox import CREDENTIALS, Sandbox
from dataplatforms_sandbox.dexi import DexiData
from tap_dataplatforms.core.errors import PlatformAuthError, SyncFailedError
from tap_dataplatforms.core.http import PlatformStream
from tap_dataplatforms.dexi.client import access_digest
from tap_dataplatforms.dexi.columns import run_slugs
from tap_dataplatforms.dexi.executions import ThrottledState
from tests.budget_at_server import cpu_burner
from tests.helpers import FakeClock, SyncOutput, make_tap, run_sync

ROOMY = {"dexi": (100_000, 60.0)}
OPEN_STATES = {"QUEUED", "PENDING", "RUNNING"}


def dexi_config(sb: Sandbox, **extra: Any) -> dict[str, Any]:
    block: dict[str, Any] = {
        "api_url": sb.base_url("dexi"),
        **CREDENTIALS["dexi"],
        "max_requests_per_second": 5000,
    }
    block.update(extra)
    return {"dexi": block}


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PlatformStream, "retry_base_seconds", 0.01)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    sb = Sandbox(seed=11, scale=1, limits=ROOMY).start()
    yield sb
    sb.stop()


@functools.cache
def big_sync() -> tuple[DexiData, SyncOutput, list[str]]:
    """One sync of an account with more than 200 runs (scale 6), shared by its tests."""
    sb = Sandbox(seed=5, scale=6, limits=ROOMY).start()
    try:
        tap = make_tap(dexi_config(sb, dataset_ids=list(sb.dexi.datasets)))
        out = run_sync(tap)
    finally:
        sb.stop()
    return sb.dexi, out, list(tap.streams)


def result_keys(out: SyncOutput) -> list[tuple[str, int]]:
    return [
        (r["_execution_id"], r["_row_index"])
        for name, records in out.records.items()
        if name.startswith("dexi_results__")
        for r in records
    ]


def expected_result_keys(model: DexiData, executions: list[Any]) -> set[tuple[str, int]]:
    """The result rows of ``executions`` the tap can read: a result gone for good (the
    default sandbox has one) is skipped by the documented rule."""
    return {(e.id, i) for e in executions if model.result_readable(e) for i in range(len(e.rows))}


def assert_unique(keys: list[Any], what: str) -> None:
    dupes = [k for k, n in Counter(keys).items() if n > 1]
    assert not dupes, f"duplicates in {what}: {dupes[:3]}"


@pytest.mark.untimed
def test_every_stream_equals_the_sandbox_by_key_at_200_plus_runs() -> None:
    model, out, _ = big_sync()
    assert len(model.runs) > 200
    finished = model.finished_executions()
    assert len(finished) > 200

    runs = [r["_id"] for r in out.records["dexi_runs"]]
    assert_unique(runs, "dexi_runs")
    assert set(runs) == {r.id for r in model.runs}

    executions = out.records["dexi_executions"]
    assert_unique([e["_id"] for e in executions], "dexi_executions")
    assert {e["_id"] for e in executions} == {e.id for e in finished}
    assert not [e for e in executions if e["finished"] is None or e["state"] in OPEN_STATES]
    assert executions[0]["finished"].endswith("+00:00")

    keys = result_keys(out)
    assert_unique(keys, "dexi_results")
    assert set(keys) == expected_result_keys(model, finished)

    for dataset_id, rows in model.datasets.items():
        name = "dexi_dataset_rows__" + dataset_id.replace("-", "_")
        indexes = [r["_row_index"] for r in out.records[name]]
        assert sorted(indexes) == list(range(len(rows)))
        assert out.records[name][0]["sku"] == rows[0]["sku"]


@pytest.mark.untimed
def test_one_results_stream_per_run_named_by_slug() -> None:
    model, out, streams = big_sync()
    slugs = run_slugs([(r.id, r.name) for r in reversed(model.runs)])  # as listed
    names = {f"dexi_results__{slug}" for slug in slugs.values()}
    assert names == {s for s in streams if s.startswith("dexi_results__")}
    assert "dexi_results__never_executed" in names
    # Two runs named "Store locator": the older keeps the slug, the newer gets 8
    # characters of its id (so that a new namesake renames no existing stream).
    older, newer = [r for r in model.runs if r.name == "Store locator"]  # oldest first
    assert slugs[older.id] == "store_locator"
    assert slugs[newer.id] == f"store_locator_{newer.id[:8]}"
    assert slugs[next(r.id for r in model.runs if r.name == "priceWatchFR")] == "price_watch_fr"
    # Rows land in their own run's stream.
    for name, records in out.records.items():
        if name.startswith("dexi_results__"):
            run_ids = {r["_run_id"] for r in records}
            assert {name.removeprefix("dexi_results__")} == {slugs[i] for i in run_ids}


@pytest.mark.untimed
def test_result_columns_are_typed_from_the_values() -> None:
    model, out, _ = big_sync()
    big = model.runs[0]
    name = "dexi_results__price_watch_de"
    assert big.name == "Price watch DE"
    schema = out.schemas[name]["properties"]
    assert schema["qty"]["type"] == ["number", "null"]  # whole numbers, declared number
    assert schema["price"]["type"] == ["number", "null"]
    assert schema["in_stock"]["type"] == ["boolean", "null"]
    assert schema["error"]["type"] == ["string", "null"]
    assert schema["_row_index"]["type"] == ["integer"]
    records = out.records[name]
    quantities = [r["qty"] for r in records if r.get("qty") is not None]
    assert quantities
    assert all(type(q) is int for q in quantities)
    locator = next(n for n in out.schemas if n.startswith("dexi_results__store_locator"))
    assert out.schemas[locator]["properties"]["open_days"]["type"] == ["array", "null"]
    # "score" holds numbers and "n/a": a string column, every value a string.
    scores = [r["score"] for r in out.records["dexi_results__review_crawl"] if r.get("score")]
    assert out.schemas["dexi_results__review_crawl"]["properties"]["score"]["type"] == [
        "string",
        "null",
    ]
    assert all(isinstance(s, str) for s in scores)


@pytest.mark.untimed
def test_second_sync_emits_exactly_what_finished_since(sandbox: Sandbox) -> None:
    model = sandbox.dexi
    config = dexi_config(sandbox)
    first = run_sync(make_tap(config))
    open_before = {e.id for e in model.open_executions()}
    assert open_before
    done = model.advance(new_executions=2)
    # The long execution that started before everything else finished now, after the
    # bookmark of its run: it must come.
    assert open_before <= {e.id for e in done}

    second = run_sync(make_tap(config, state=copy.deepcopy(first.states[-1])))
    got = [e["_id"] for e in second.records["dexi_executions"]]
    assert_unique(got, "dexi_executions")
    # Exactly the new ones: those sitting on the bookmark were delivered by the first sync.
    assert set(got) == {e.id for e in done}
    assert set(result_keys(second)) == expected_result_keys(model, done)

    # Nothing new: nothing emitted, and the long list is read one page deep.
    sandbox.clear_log()
    third = run_sync(make_tap(config, state=copy.deepcopy(second.states[-1])))
    assert third.records["dexi_executions"] == []
    assert result_keys(third) == []
    big = model.runs[0].id
    listed = [
        e["query"].get("offset")
        for e in sandbox.request_log("dexi")
        if e["path"] == f"/runs/{big}/executions" and e["query"].get("limit") == "200"
    ]
    assert listed == ["0"]


def raw_sync(config: dict[str, Any], state: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    tap = make_tap(config, state=state)
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        tap.preflight()
        tap.sync_all()
    tap.finish()
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


@pytest.mark.untimed
def test_killed_sync_resumes_from_its_last_state(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ThrottledState, "STATE_EVERY_SECONDS", 0.0)
    config = dexi_config(sandbox)
    messages = raw_sync(config)
    records = [i for i, m in enumerate(messages) if m["type"] == "RECORD"]
    cut = records[len(records) // 2]  # the process dies here
    before = messages[:cut]
    state = next(m["value"] for m in reversed(before) if m["type"] == "STATE")
    after = raw_sync(config, state=state)

    def keys(msgs: list[dict[str, Any]]) -> tuple[set[str], set[tuple[str, int]]]:
        rows = [m for m in msgs if m["type"] == "RECORD"]
        executions = {m["record"]["_id"] for m in rows if m["stream"] == "dexi_executions"}
        results = {
            (m["record"]["_execution_id"], m["record"]["_row_index"])
            for m in rows
            if m["stream"].startswith("dexi_results__")
        }
        return executions, results

    executions_1, results_1 = keys(before)
    executions_2, results_2 = keys(after)
    finished = sandbox.dexi.finished_executions()
    assert executions_1
    assert executions_2
    assert executions_1 | executions_2 == {e.id for e in finished}
    assert results_1 | results_2 == expected_result_keys(sandbox.dexi, finished)
    # The resumed sync did not start over.
    assert len(executions_2) < len(finished)


@pytest.mark.untimed
def test_executions_added_while_paging_cause_no_gap_and_no_duplicate(sandbox: Sandbox) -> None:
    model = sandbox.dexi
    big = model.runs[0]
    model.insert_while_paging[big.id] = 2
    out = run_sync(make_tap(dexi_config(sandbox, run_ids=[big.id])))
    got = [e["_id"] for e in out.records["dexi_executions"]]
    assert_unique(got, "dexi_executions")
    assert model.insert_while_paging[big.id] == 0  # both inserted during the sync
    assert set(got) == {e.id for e in model.finished_executions(big.id)}


@pytest.mark.untimed
def test_files_are_streamed_to_disk_and_described(sandbox: Sandbox, tmp_path: Path) -> None:
    model = sandbox.dexi
    run = next(r for r in model.runs if r.name == "priceWatchFR")
    config = dexi_config(
        sandbox, run_ids=[run.id], download_files=True, files_dir=str(tmp_path / "files")
    )
    out = run_sync(make_tap(config))
    cells = {
        c: e.id
        for e in model.readable_results(run.id)
        for row in e.rows
        for c in row
        if isinstance(c, str) and c.startswith("FILE:")
    }
    assert cells
    files = out.records["dexi_files"]
    assert_unique([f["file_id"] for f in files], "dexi_files")
    assert {f["file_id"] for f in files} == {c.rsplit(";", 1)[1] for c in cells}
    for record in files:
        content = model.files[record["file_id"]]
        assert Path(record["path"]).read_bytes() == content
        assert Path(record["path"]).is_relative_to(tmp_path / "files")
        assert record["sha256"] == hashlib.sha256(content).hexdigest()
        assert record["size"] == len(content)
        assert record["mime_type"] == "image/jpeg"
        assert record["run_id"] == run.id
    # The result rows keep the original cells.
    images = {r["image"] for r in out.records["dexi_results__price_watch_fr"] if r.get("image")}
    assert images == set(cells)
    log = sandbox.request_log("dexi")
    downloads = [e for e in log if "/file/" in e["path"]]
    assert len(downloads) == len(files)
    assert not [e for e in log if e["status"] == 429]


@pytest.mark.untimed
def test_a_deleted_run_fails_its_partition_and_the_rest_goes_on(sandbox: Sandbox) -> None:
    model = sandbox.dexi
    keep, gone = model.runs[1], model.runs[3]
    config = dexi_config(sandbox, run_ids=[keep.id, gone.id])
    tap = make_tap(config)
    model.delete_run(gone.id)  # deleted after discovery, before the sync
    out = run_sync(tap, finish=False)
    assert {r["_id"] for r in out.records["dexi_runs"]} == {keep.id}
    assert {e["_id"] for e in out.records["dexi_executions"]} == {
        e.id for e in model.finished_executions(keep.id)
    }
    with pytest.raises(SyncFailedError, match="Run not found"):
        tap.finish()


@pytest.mark.untimed
def test_forced_429_and_500_are_waited_out(sandbox: Sandbox) -> None:
    sandbox.force("dexi", status=429, count=2, path_contains="/executions")
    sandbox.force("dexi", status=500, count=1, path_contains="/result")
    out = run_sync(make_tap(dexi_config(sandbox)))
    finished = sandbox.dexi.finished_executions()
    assert {e["_id"] for e in out.records["dexi_executions"]} == {e.id for e in finished}
    assert set(result_keys(out)) == expected_result_keys(sandbox.dexi, finished)
    statuses = Counter(e["status"] for e in sandbox.request_log("dexi"))
    assert statuses[429] == 2
    assert statuses[500] == 1


@pytest.mark.untimed
def test_wrong_key_fails_before_any_record(sandbox: Sandbox) -> None:
    config = dexi_config(sandbox, api_key="not-the-key")
    with pytest.raises(PlatformAuthError, match="Dexi: HTTP 401"):
        run_sync(make_tap(config))
    sent = sandbox.request_log("dexi")
    assert len(sent) == 1
    assert sent[0]["request_headers"]["x-dexiio-access"] == "<redacted>"


@pytest.mark.untimed
def test_execute_runs_starts_waits_then_extracts_in_the_same_sync(sandbox: Sandbox) -> None:
    model = sandbox.dexi
    runs = [model.runs[4], model.runs[5]]
    config = dexi_config(sandbox, run_ids=[r.id for r in runs], execute_runs=True)
    clock = FakeClock()
    out = run_sync(make_tap(config, clock=clock))
    assert len(model.started) == 2
    slugs = run_slugs([(r.id, r.name) for r in reversed(model.runs)])  # as listed
    log = sandbox.request_log("dexi")
    for started in model.started:
        execution = model.by_id[started]
        assert execution.state == "OK"
        assert execution.finished is not None
        assert started in {e["_id"] for e in out.records["dexi_executions"]}
        stream = f"dexi_results__{slugs[execution.run_id]}"
        rows = [r for r in out.records[stream] if r["_execution_id"] == started]
        assert len(rows) == len(execution.rows) > 0
        polls = [e for e in log if e["path"] == f"/executions/{started}"]
        assert len(polls) == model.execution_looks
    posts = [i for i, e in enumerate(log) if e["method"] == "POST"]
    assert sorted(log[i]["path"] for i in posts) == sorted(f"/runs/{r.id}/execute" for r in runs)
    # Both runs were started before the tap waited for either.
    polled = {f"/executions/{started}" for started in model.started}
    first_poll = next(i for i, e in enumerate(log) if e["path"] in polled)
    assert max(posts) < first_poll
    assert not [e for e in log if e["path"].endswith("/wait")]
    assert clock.sleeps  # it waited between polls, on the budget's clock


@pytest.mark.untimed
def test_a_start_whose_answer_is_lost_is_adopted_not_sent_again(sandbox: Sandbox) -> None:
    """The default sandbox loses the answer to the first start of a run after starting
    it (dropped, cut mid-body, 502): each run is executed once, and its result read."""
    model = sandbox.dexi
    runs = [model.runs[1], model.runs[3], model.runs[4], model.runs[5]]
    config = dexi_config(sandbox, run_ids=[r.id for r in runs], execute_runs=True)
    out = run_sync(make_tap(config, clock=FakeClock()))
    assert sorted(how for _, how in model.lost_start_answers) == ["5xx", "cut", "drop"]
    assert model.started_per_run() == {r.id: 1 for r in runs}
    slugs = run_slugs([(r.id, r.name) for r in reversed(model.runs)])  # as listed
    for started in model.started:
        execution = model.by_id[started]
        assert execution.state == "OK"
        assert started in {e["_id"] for e in out.records["dexi_executions"]}
        rows = out.records[f"dexi_results__{slugs[execution.run_id]}"]
        assert len([r for r in rows if r["_execution_id"] == started]) == len(execution.rows) > 0
    posts = [e for e in sandbox.request_log("dexi") if e["method"] == "POST"]
    assert len(posts) == len(runs)


@pytest.mark.untimed
def test_a_start_is_sent_again_when_the_lost_request_started_nothing(sandbox: Sandbox) -> None:
    model = sandbox.dexi
    model.lose_start_answers = False
    run = model.runs[4]
    # Answered 502 before anything was started: nothing shows in the listing, so after
    # the grace period the start is sent again, once.
    sandbox.force("dexi", status=502, count=1, path_contains="/execute")
    clock = FakeClock()
    config = dexi_config(sandbox, run_ids=[run.id], execute_runs=True)
    out = run_sync(make_tap(config, clock=clock))
    assert model.started_per_run() == {run.id: 1}
    [started] = model.started
    assert started in {e["_id"] for e in out.records["dexi_executions"]}
    posts = [e for e in sandbox.request_log("dexi") if e["method"] == "POST"]
    assert [p["status"] for p in posts] == [502, 200]
    assert sum(clock.sleeps) >= 10.0  # the grace period, on the budget's clock


@pytest.mark.untimed
def test_a_lost_start_that_cannot_be_looked_up_is_not_sent_again(sandbox: Sandbox) -> None:
    model = sandbox.dexi
    run = model.runs[4]
    # The start is carried out and its answer dropped; then the listing keeps failing.
    config = dexi_config(sandbox, run_ids=[run.id], execute_runs=True, max_requests_per_second=5000)
    tap = make_tap({**config, "max_retries": 1}, clock=FakeClock())
    original = model.lost_answer_for_first_start

    def lose_and_break_listing(run_id: str) -> str | None:
        sandbox.force("dexi", status=500, count=100, path_contains="/executions")
        original(run_id)
        return "drop"

    model.lost_answer_for_first_start = lose_and_break_listing  # type: ignore[method-assign]
    out = run_sync(tap, finish=False)
    assert model.started_per_run() == {run.id: 1}
    posts = [e for e in sandbox.request_log("dexi") if e["method"] == "POST"]
    assert len(posts) == 1
    assert not out.records.get("dexi_executions")
    with pytest.raises(SyncFailedError) as caught:
        tap.finish()
    assert "cannot be looked up" in str(caught.value)
    assert run.id in str(caught.value)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.untimed
def test_through_seeded_faults_no_run_is_started_twice(sandbox: Sandbox, seed: int) -> None:
    model = sandbox.dexi
    runs = [model.runs[1], model.runs[3], model.runs[4], model.runs[5]]
    sandbox.set_faults(0.15, seed=seed, slow_seconds=0.0)
    config = dexi_config(sandbox, run_ids=[r.id for r in runs], execute_runs=True)
    tap = make_tap(config, clock=FakeClock())
    out = run_sync(tap, finish=False)
    started = model.started_per_run()
    assert set(started.values()) <= {1}
    extracted = {r["_execution_id"] for n, rs in out.records.items() if "results" in n for r in rs}
    for execution_id in model.started:
        assert execution_id in extracted
    # A run the tap could not start (its start, and the one sent again, lost before
    # Dexi acted on them) is a failure that names it, never a silent gap.
    missing = [r.id for r in runs if r.id not in started]
    if missing:
        with pytest.raises(SyncFailedError) as caught:
            tap.finish()
        assert all(run_id in str(caught.value) for run_id in missing)
    assert sandbox.fault_counts()["dexi"]


def test_the_sandbox_limits_writes_and_file_downloads_at_15_per_second(
    sandbox: Sandbox,
) -> None:
    url = sandbox.base_url("dexi") + "/datasets/" + next(iter(sandbox.dexi.datasets)) + "/rows"
    account = CREDENTIALS["dexi"]["account_id"]
    headers = {
        "X-DexiIO-Account": account,
        "X-DexiIO-Access": access_digest(account, CREDENTIALS["dexi"]["api_key"]),
    }
    with requests.Session() as session:
        statuses = [session.post(url, json={"offset": 0}, headers=headers) for _ in range(20)]
    assert Counter(r.status_code for r in statuses)[429] >= 1
    limited = next(r for r in statuses if r.status_code == 429)
    assert limited.json() == {"error": True, "code": 429, "message": "Too many requests"}
    assert "Retry-After" not in limited.headers
    assert len(statuses[0].json()["rows"]) == 200  # capped


def test_a_429_on_a_file_download_is_waited_out(sandbox: Sandbox, tmp_path: Path) -> None:
    model = sandbox.dexi
    run = next(r for r in model.runs if r.name == "priceWatchFR")
    sandbox.force("dexi", status=429, count=1, delay=0.2, path_contains="/file/")
    config = dexi_config(
        sandbox, run_ids=[run.id], download_files=True, files_dir=str(tmp_path / "files")
    )
    out = run_sync(make_tap(config))
    expected = {
        c.rsplit(";", 1)[1]
        for e in model.readable_results(run.id)
        for row in e.rows
        for c in row
        if isinstance(c, str) and c.startswith("FILE:")
    }
    assert {f["file_id"] for f in out.records["dexi_files"]} == expected
    assert Counter(e["status"] for e in sandbox.request_log("dexi"))[429] == 1


def test_a_tight_get_budget_is_never_exceeded(sandbox: Sandbox) -> None:
    sandbox.set_limit("dexi", limit=8, window_seconds=1.0)
    run = sandbox.dexi.runs[5]
    with cpu_burner():  # as requests arrive on a busy machine
        out = run_sync(make_tap(dexi_config(sandbox, run_ids=[run.id], max_requests_per_second=8)))
    log = sandbox.request_log("dexi")
    assert len(log) > 10  # more than one window's worth
    assert [e for e in log if e["status"] == 429] == []
    assert {e["_id"] for e in out.records["dexi_executions"]} == {
        e.id for e in sandbox.dexi.finished_executions(run.id)
    }


def newest_finished_with_rows(model: DexiData) -> Any:
    executions = [e for e in model.finished_executions() if e.rows]
    return max(executions, key=lambda e: (e.finished, e.id))


@pytest.mark.untimed
def test_a_result_gone_for_good_is_named_and_the_bookmark_moves_past_it(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    model = sandbox.dexi
    gone = newest_finished_with_rows(model)
    model.gone_results.add(gone.id)
    config = dexi_config(sandbox, run_ids=[gone.run_id])
    tap = make_tap(config)
    caplog.set_level(logging.WARNING)
    first = run_sync(tap)  # the documented rule: not a failure
    (skipped,) = [s for s in tap.runtime.skipped if gone.id in s.partition]
    assert "410" in skipped.message
    assert gone.id in caplog.text
    others = [e for e in model.finished_executions(gone.run_id) if e.id != gone.id]
    assert set(result_keys(first)) == expected_result_keys(model, others)
    # The next sync does not stop at it again: nothing new, and it is not asked for.
    sandbox.clear_log()
    second = run_sync(make_tap(config, state=copy.deepcopy(first.states[-1])))
    assert second.records["dexi_executions"] == []
    assert not [e for e in sandbox.request_log("dexi") if gone.id in e["path"]]


@pytest.mark.untimed
def test_the_default_sandbox_has_a_result_gone_and_the_sync_moves_past_it(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """The default sandbox's oldest result of the first run has expired (410): the sync
    names it in the log and the summary, reads every other result, and succeeds."""
    model = sandbox.dexi
    (gone,) = model.gone_results
    run = model.by_id[gone].run_id
    caplog.set_level(logging.WARNING)
    tap = make_tap(dexi_config(sandbox, run_ids=[run]))
    out = run_sync(tap)  # no failure
    assert [s.partition for s in tap.runtime.skipped if gone in s.partition]
    assert any(gone in line for line in tap.runtime.skipped_lines())
    assert gone in caplog.text
    assert gone in {e["_id"] for e in out.records["dexi_executions"]}
    assert not [k for k in result_keys(out) if k[0] == gone]
    readable = model.readable_results(run)
    assert len(readable) == len(model.finished_executions(run)) - 1
    assert set(result_keys(out)) == expected_result_keys(model, readable)


@pytest.mark.untimed
def test_strict_results_fails_and_keeps_the_bookmark_before_a_gone_result(
    sandbox: Sandbox,
) -> None:
    model = sandbox.dexi
    gone = newest_finished_with_rows(model)
    model.gone_results.add(gone.id)
    config = dexi_config(sandbox, run_ids=[gone.run_id], strict_results=True)
    tap = make_tap(config)
    first = run_sync(tap, finish=False)
    with pytest.raises(SyncFailedError, match="no longer available"):
        tap.finish()
    second = run_sync(make_tap(config, state=copy.deepcopy(first.states[-1])), finish=False)
    assert gone.id in {e["_id"] for e in second.records["dexi_executions"]}
