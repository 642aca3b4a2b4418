"""Dexi results through the lean record loop write what the SDK's own loop writes."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from dataplatforms_sandbox import Sandbox
from tap_dataplatforms.dexi.executions import ThrottledState
from tap_dataplatforms.dexi.streams import ResultsStream
from tests.helpers import make_tap
from tests.lean_loop import comparable
from tests.test_dexi_encoded_rows import counted_runs
from tests.test_dexi_sandbox import ROOMY, dexi_config, raw_sync


@pytest.mark.parametrize("workers", [1, 4])
def test_the_lean_loop_writes_what_the_sdk_loop_writes(
    monkeypatch: pytest.MonkeyPatch, loops: dict[str, int], workers: int
) -> None:
    # A STATE whenever one is due, and a few within each result, so that their place
    # among the records is compared too.
    monkeypatch.setattr(ThrottledState, "STATE_EVERY_SECONDS", 0.0)
    monkeypatch.setattr(ResultsStream, "STATE_MSG_FREQUENCY", 700)
    with Sandbox(seed=3, scale=1, limits=ROOMY, bulk={"dexi": (6000, 1500)}) as sb:
        config = dexi_config(sb)
        config["max_concurrency"] = workers

        def run(lean: bool, state: dict[str, Any] | None = None) -> list[dict[str, Any]]:
            monkeypatch.setattr(ResultsStream, "LEAN_RECORD_LOOP", lean)
            return comparable(raw_sync(config, state=copy.deepcopy(state)))

        standard = run(False)
        assert loops["lean"] == 0
        assert loops["sdk"] > 0
        encoded = counted_runs(monkeypatch)
        lean = run(True)
        assert loops["lean"] > 0
        assert sum(encoded) > 3000  # most rows came a run at a time (dexi/rowtext.py)
        assert lean == standard
        rows = [m for m in lean if m["type"] == "RECORD" and m["stream"].startswith("dexi_results")]
        assert len(rows) > 6000
        assert {m["stream"] for m in lean if m["type"] == "RECORD"} > {rows[0]["stream"]}

        # Resumed from a STATE half-way: the same bookmarks are read and written.
        states = [i for i, m in enumerate(lean) if m["type"] == "STATE"]
        middle = lean[states[len(states) // 2]]["value"]
        assert run(True, middle) == run(False, middle)


def test_a_stream_with_children_or_a_record_limit_takes_the_sdk_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with Sandbox(seed=3, scale=1, limits=ROOMY) as sb:
        tap = make_tap(dexi_config(sb))
        results = next(s for s in tap.streams.values() if isinstance(s, ResultsStream))
        context = {"run_id": results.run_id, "execution_id": "e"}
        assert results._lean_loop_fits(context, True)
        assert not results._lean_loop_fits(context, False)
        assert not results._lean_loop_fits(None, True)
        monkeypatch.setattr(results, "ABORT_AT_RECORD_COUNT", 10)
        assert not results._lean_loop_fits(context, True)
        monkeypatch.setattr(results, "ABORT_AT_RECORD_COUNT", None)
        monkeypatch.setattr(results, "child_streams", [object()])
        assert not results._lean_loop_fits(context, True)
