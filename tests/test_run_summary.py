"""The run summary at the end of every sync, and long budget waits said when they start."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from dataplatforms_sandbox import CREDENTIALS, Sandbox
from tap_dataplatforms.core import summary
from tap_dataplatforms.core.budget import BudgetRegistry, rates_per_second
from tests.helpers import FakeClock, make_tap, run_sync
from tests.sandbox_env import ROOMY_LIMITS


@pytest.fixture
def sandbox() -> Any:
    sb = Sandbox(seed=1, scale=1, limits=ROOMY_LIMITS).start()
    yield sb
    sb.stop()


def config(sb: Sandbox, path: Path) -> dict[str, Any]:
    return {
        "run_summary_path": str(path),
        "redivis": {
            "api_url": sb.base_url("redivis"),
            "token": CREDENTIALS["redivis"]["token"],
            "organizations": ["demo"],
            "users": [],
            "max_requests_per_second": 200,
        },
        "invision": {
            "api_url": sb.base_url("invision"),
            "api_key": CREDENTIALS["invision"]["api_key"],
            "max_requests_per_second": 200,
        },
    }


def test_summary_counts_each_stream_and_shows_the_bookmark_moving(
    sandbox: Sandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "summary.json"
    caplog.set_level(logging.INFO)
    sandbox.clear_log()
    first = run_sync(make_tap(config(sandbox, path)))
    rows = {r["stream"]: r for r in json.loads(path.read_text())["streams"]}
    for stream, records in first.records.items():
        assert rows[stream]["records"] == len(records), stream
    # Every request the sandbox saw is counted against exactly one stream.
    for platform in ("redivis", "invision"):
        counted = sum(r["requests"] for s, r in rows.items() if s.startswith(platform))
        assert counted == len(sandbox.request_log(platform)), platform
    log = rows["invision_execution_log"]
    assert log["bookmark_before"] == "-"
    assert log["bookmark_after"] != "-"
    assert "Run summary:" in caplog.text
    assert "invision_execution_log" in caplog.text.split("Run summary:")[1]

    sandbox.invision.advance(rows=2)
    run_sync(make_tap(config(sandbox, path), state=copy.deepcopy(first.states[-1])))
    again = {r["stream"]: r for r in json.loads(path.read_text())["streams"]}
    assert again["invision_execution_log"]["bookmark_before"] == log["bookmark_after"]
    assert again["invision_execution_log"]["records"] >= 2
    assert json.loads(path.read_text())["exit_code"] == 0


def test_a_long_budget_wait_is_logged_when_it_starts(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    budget = BudgetRegistry("memory", clock).get("datalinx", ("key",), rates_per_second(1.0))
    budget.acquire()
    caplog.set_level(logging.INFO, logger="tap-dataplatforms.budget")
    budget.acquire()  # about a second: paced, not announced
    assert "waiting" not in caplog.text
    budget.pause_until(clock.time() + 12, reason="a test")
    waited = budget.acquire()
    assert waited >= 12
    (line,) = [r.getMessage() for r in caplog.records if "waiting" in r.getMessage()]
    assert line.startswith("datalinx: waiting 1")
    assert "requests budget" in line


def test_failed_partitions_count_the_streams_each_failure_names() -> None:
    """A failure counts for the streams it says it left incomplete, whatever its label."""
    runtime = make_tap({"redivis": {"token": "t-123456"}}).runtime
    runtime.record_failure("sources [acme/gone]", "not visible", streams=["reinfer_sources"])
    runtime.record_failure("reinfer_comments [source_id=1]", "500", streams=["reinfer_comments"])
    # Found at discovery: the stream was not made, so nothing of it is incomplete.
    runtime.record_failure("reinfer_comments [discovery]", "404", streams=())
    runtime.record_failure("unknown", "boom")
    assert summary.failed_partitions(runtime, "reinfer_sources") == 1
    assert summary.failed_partitions(runtime, "reinfer_comments") == 1
    assert summary.failed_partitions(runtime, "reinfer_comments_x") == 0
    assert summary.failed_partitions(runtime, "redivis_rows") == 0
