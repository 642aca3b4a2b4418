"""Redivis tables and variables of later datasets read ahead (max_concurrency)."""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
from typing import Any

import pytest

from dataplatforms_sandbox import Sandbox
from tap_dataplatforms.core import ratelimit
from tap_dataplatforms.core.budget import BudgetRegistry, rates_per_second
from tap_dataplatforms.core.http import PlatformStream
from tap_dataplatforms.redivis import prefetch
from tap_dataplatforms.redivis.client import RedivisStream
from tap_dataplatforms.tap import TapDataPlatforms
from tests.helpers import FakeClock, make_tap
from tests.sandbox_env import redivis_config

METADATA = ("redivis_datasets", "redivis_tables", "redivis_variables")
ROOMY = {"redivis": (100_000, 60.0)}


def only(tap: TapDataPlatforms, *names: str) -> TapDataPlatforms:
    for stream in tap.streams.values():
        stream.selected = stream.name in names
    return tap


def messages(tap: TapDataPlatforms) -> list[dict[str, Any]]:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        tap.preflight()
        tap.sync_all()
    out = [json.loads(line) for line in buffer.getvalue().splitlines()]
    for message in out:
        message.pop("time_extracted", None)
        # the metadata lists are full-table: their table version is the sync's start time
        message.pop("version", None)
    return out


def sync(sb: Sandbox, workers: int, *names: str, **extra: Any) -> list[dict[str, Any]]:
    config = redivis_config(sb, max_requests_per_second=1000, **extra)
    config["max_concurrency"] = workers
    tap = only(make_tap(config), *names)
    return messages(tap)


@pytest.fixture(scope="module")
def sandbox() -> Any:
    with Sandbox(seed=4, scale=1, limits=ROOMY) as sb:
        yield sb


@pytest.mark.parametrize(
    "names",
    [
        METADATA,
        ("redivis_variables",),
        ("redivis_tables",),
        ("redivis_datasets", "redivis_variables"),
    ],
)
@pytest.mark.untimed
def test_a_concurrent_sync_writes_what_a_sequential_one_does(
    sandbox: Sandbox, names: tuple[str, ...]
) -> None:
    sequential = sync(sandbox, 1, *names)
    concurrent = sync(sandbox, 4, *names)
    assert concurrent == sequential
    streams = {m["stream"] for m in concurrent if m["type"] == "RECORD"}
    assert streams == set(names)
    # the same requests too: nothing read ahead that a sequential sync does not read
    assert any(m["stream"] == names[-1] for m in concurrent if m["type"] == "RECORD")


@pytest.mark.untimed
def test_the_same_requests_as_a_sequential_sync(sandbox: Sandbox) -> None:
    paths: dict[int, list[str]] = {}
    for workers in (1, 4):
        sandbox.clear_log()
        sync(sandbox, workers, *METADATA)
        # An answer the default sandbox spoiled once (HTML, empty) is asked for again.
        log = sandbox.request_log("redivis")
        paths[workers] = sorted(e["path"] for e in log if not e.get("glitch"))
    assert paths[4] == paths[1]
    assert sum("/variables" in p for p in paths[4]) > 20


@pytest.mark.untimed
def test_failed_partitions_fail_as_in_a_sequential_sync(sandbox: Sandbox) -> None:
    records = [m["record"] for m in sync(sandbox, 1, *METADATA) if m["type"] == "RECORD"]
    tables = [r for r in records if "dataset_reference" in r and "variableCount" in r]
    datasets = list(dict.fromkeys(r["dataset_reference"] for r in tables))
    # a later dataset's tables answer 404, a table of another dataset's variables 403
    lost_dataset = datasets[3]
    lost_table = next(
        r["qualifiedReference"] for r in tables if r["dataset_reference"] == datasets[5]
    )
    outputs, failures = {}, {}
    for workers in (1, 4):
        sandbox.clear_forced()
        sandbox.force("redivis", 404, path_contains=f"/datasets/{lost_dataset}/tables")
        sandbox.force("redivis", 403, path_contains=f"/tables/{lost_table}/variables")
        config = redivis_config(sandbox, max_requests_per_second=1000)
        config["max_concurrency"] = workers
        tap = only(make_tap(config), *METADATA)
        outputs[workers] = messages(tap)
        failures[workers] = [(f.partition, f.message) for f in tap.runtime.failures]
    sandbox.clear_forced()
    assert outputs[4] == outputs[1]
    assert failures[4] == failures[1]
    assert len(failures[1]) == 2
    assert len(outputs[1]) < len(sync(sandbox, 1, *METADATA))


def test_children_of_several_datasets_are_read_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    in_flight, peak = 0, 0
    lock = threading.Lock()
    send = PlatformStream.send_prepared

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        try:
            return send(self, *args, **kwargs)
        finally:
            with lock:
                in_flight -= 1

    monkeypatch.setattr(PlatformStream, "send_prepared", counted)
    with Sandbox(seed=4, scale=1, limits=ROOMY, latency_ms=30) as sb:
        started = time.monotonic()
        sync(sb, 4, *METADATA)
        concurrent = time.monotonic() - started
        assert peak > 1
        peak = 0
        started = time.monotonic()
        sync(sb, 1, *METADATA)
        sequential = time.monotonic() - started
        assert peak == 1
    assert concurrent < sequential / 1.5


def test_a_table_left_out_of_the_sync_is_not_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sync and the workers disagree (the sync skips a table's variables): the rest
    of the dataset is still served, the disagreeing partition read directly."""
    ahead = prefetch.MetadataReadAhead.__new__(prefetch.MetadataReadAhead)
    items = iter(
        [
            (("tables", 0), "page-1"),
            (("variables", "t1"), "v1"),
            (("variables", "t1"), prefetch._END),
            (("variables", "t2"), "v2"),
            (("variables", "t2"), prefetch._END),
            (("tables", 0), prefetch._END),
        ]
    )
    ahead._feed = (item for item in items)  # type: ignore[assignment]
    ahead._pending = None
    tables = ahead._answers(("tables", 0))
    assert next(tables) == "page-1"
    answers = ahead.variables({"table_reference": "t2"})  # t1 skipped by the sync
    assert answers is not None
    assert list(answers) == ["v2"]
    assert ahead.variables({"table_reference": "t3"}) is None  # never read ahead
    assert list(tables) == []


def test_no_read_ahead_with_one_worker_or_a_filtering_map(sandbox: Sandbox) -> None:
    tap = make_tap(redivis_config(sandbox))
    datasets, tables = tap.streams["redivis_datasets"], tap.streams["redivis_tables"]
    assert isinstance(tables, RedivisStream)
    assert prefetch.read_ahead_fits(datasets, tables)
    tables.selected = False
    tap.streams["redivis_variables"].selected = False
    assert not prefetch.read_ahead_fits(datasets, tables)
    config = redivis_config(sandbox)
    config["stream_maps"] = {"redivis_tables": {"__filter__": "numRows > 0"}}
    tap = make_tap(config)
    assert not prefetch.read_ahead_fits(
        tap.streams["redivis_datasets"], tap.streams["redivis_tables"]
    )


def test_remaining_requests_count_those_still_in_flight() -> None:
    headers = {"X-RateLimit-Remaining": "2", "X-RateLimit-Reset": str(1_800_000_010_000)}
    now = 1_800_000_000.0
    assert ratelimit.exhausted_until(headers, received_at=now) is None
    assert ratelimit.exhausted_until(headers, received_at=now, in_flight=1) is None
    hint = ratelimit.exhausted_until(headers, received_at=now, in_flight=2)
    assert hint is not None
    assert hint.instant == pytest.approx(now + 10)


def test_what_remains_is_shared_with_the_requests_in_flight() -> None:
    clock = FakeClock()
    budget = BudgetRegistry(clock=clock).get("redivis", ("t",), rates_per_second(1000), "r")
    for _ in range(3):
        budget.acquire(in_flight=True)
    # the first answer: 2 left, and two more requests are already on their way
    assert budget.observe_remaining(2, clock.time() + 10)
    budget.done()
    waited = budget.acquire(in_flight=True)
    assert waited >= 9.9  # nothing left for a new request before the window resets
    budget.done()
    budget.done()
    budget.done()
    assert budget.in_flight == 0
    assert not budget.observe_remaining(5, clock.time() + 10)
    for _ in range(5):
        assert budget.acquire() < 1
    assert budget.acquire() > 5
