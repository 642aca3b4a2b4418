"""Stable identity: Re:infer comment bookmarks are keyed by the source's id, and a state
written by the previous release (tests/fixtures/reinfer_state_keyed_by_name.json: the
final STATE of a full Re:infer sync of Sandbox(seed=1) by that release, whose partitions
carry the source's project and name too) is read correctly. Datalinx bookmarks are keyed
by the workspace's id, and a state keyed by workspace name
(tests/fixtures/datalinx_state_keyed_by_name.json: the final STATE of a full Datalinx sync
of Sandbox(seed=5) by the release before) is read correctly."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from dataplatforms_sandbox import CREDENTIALS, Sandbox
from tests.helpers import make_tap, run_sync

SAVED = Path(__file__).parent / "fixtures" / "reinfer_state_keyed_by_name.json"
SAVED_DATALINX = Path(__file__).parent / "fixtures" / "datalinx_state_keyed_by_name.json"


@pytest.fixture
def sandbox() -> Any:
    sb = Sandbox(seed=1, scale=1, limits={"reinfer": (100_000, 60.0)}).start()
    yield sb
    sb.stop()


def config(sb: Sandbox) -> dict[str, Any]:
    block = {
        "api_url": sb.base_url("reinfer"),
        "token": CREDENTIALS["reinfer"]["token"],
        "max_requests_per_second": 500,
    }
    return {"reinfer": block}


def only_comments(state: dict[str, Any]) -> dict[str, Any]:
    return {"bookmarks": {"reinfer_comments": state["bookmarks"]["reinfer_comments"]}}


def test_a_state_of_the_previous_release_resumes_where_it_stopped(sandbox: Sandbox) -> None:
    saved = json.loads(SAVED.read_text())
    sources = {
        p["context"]["source_id"] for p in saved["bookmarks"]["reinfer_comments"]["partitions"]
    }
    assert sources <= set(sandbox.reinfer.sources)  # the same seeded tenant
    out = run_sync(make_tap(config(sandbox), state=copy.deepcopy(saved)))
    # Only the comments sitting on each bookmark come again (the bound is inclusive).
    marks = {
        p["context"]["source_id"]: p.get("replication_key_value")
        for p in saved["bookmarks"]["reinfer_comments"]["partitions"]
    }
    again = out.records["reinfer_comments"]
    assert again
    assert all(r["timestamp"] == marks[r["source_id"]] for r in again)
    partitions = out.states[-1]["bookmarks"]["reinfer_comments"]["partitions"]
    assert all(set(p["context"]) == {"source_id"} for p in partitions)
    assert {p["context"]["source_id"] for p in partitions} == sources


def test_renaming_a_source_does_not_read_its_comments_again(sandbox: Sandbox) -> None:
    first = run_sync(make_tap(config(sandbox)))
    everything = len(first.records["reinfer_comments"])
    inbox = sandbox.reinfer.source_named("acme-support", "inbox")
    assert inbox is not None
    inbox.name = "inbox-2024"
    again = run_sync(make_tap(config(sandbox), state=only_comments(first.states[-1])))
    renamed = [r for r in again.records["reinfer_comments"] if r["source_id"] == inbox.id]
    # Only those on the bookmark (the bound is inclusive), not the source's history.
    mark = max(
        r["timestamp"] for r in first.records["reinfer_comments"] if r["source_id"] == inbox.id
    )
    assert all(r["timestamp"] == mark for r in renamed), f"{len(renamed)} of {everything} again"
    assert {r["source_name"] for r in renamed} <= {"inbox-2024"}


def test_a_datalinx_state_keyed_by_workspace_name_resumes_by_id() -> None:
    sb = Sandbox(seed=5, scale=1, limits={"datalinx": (100_000, 60.0)}).start()
    try:
        saved = json.loads(SAVED_DATALINX.read_text())
        block = {
            "api_url": sb.base_url("datalinx"),
            "api_key": CREDENTIALS["datalinx"]["api_key"],
            "max_requests_per_second": 500,
        }
        out = run_sync(make_tap({"datalinx": block}, state=copy.deepcopy(saved)))
        ids = {ws["name"]: ws["id"] for ws in sb.datalinx.workspaces}
        for stream, bookmark in saved["bookmarks"].items():
            marks = {
                p["context"]["workspace"]: p.get("replication_key_value")
                for p in bookmark.get("partitions", [])
            }
            if not marks:
                continue
            # Only the records sitting on each bookmark come again (inclusive bound).
            again = out.records[stream]
            assert all(r["updated_at"] == marks[r["workspace"]] for r in again), stream
            partitions = out.states[-1]["bookmarks"][stream]["partitions"]
            assert [p["context"] for p in partitions] == [
                {"workspace_id": ids[name]} for name in marks
            ], stream
    finally:
        sb.stop()
