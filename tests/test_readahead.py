"""The process's one worker pool (core.readahead) and its read-ahead."""

from __future__ import annotations

import ast
import contextlib
import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from dataplatforms_sandbox import Sandbox
from tap_dataplatforms.core import readahead
from tap_dataplatforms.core.http import PlatformStream
from tap_dataplatforms.core.readahead import PagePrefetch
from tests.helpers import make_tap, run_sync
from tests.sandbox_env import all_platforms


class PoolStats:
    """What the pool did: threads started and pools created (counted by the tests)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.threads_started = 0
        self.pools_created = 0

    def reset(self) -> None:
        with self.lock:
            self.threads_started = 0
            self.pools_created = 0

    def pool_class(self) -> type[ThreadPoolExecutor]:
        stats = self

        class CountedPool(ThreadPoolExecutor):
            def __init__(
                self, *args: Any, initializer: Callable[[], None] | None = None, **kwargs: Any
            ) -> None:
                with stats.lock:
                    stats.pools_created += 1

                def started() -> None:
                    with stats.lock:
                        stats.threads_started += 1
                    if initializer is not None:
                        initializer()

                super().__init__(*args, initializer=started, **kwargs)

        return CountedPool


stats = PoolStats()


@pytest.fixture(autouse=True)
def small_pool(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    readahead.shutdown()
    before = readahead.size()
    readahead.configure(2)
    monkeypatch.setattr(readahead, "ThreadPoolExecutor", stats.pool_class())
    stats.reset()
    yield
    readahead.shutdown()
    readahead.configure(before)


def test_read_ahead_keeps_order_and_bounds_the_work_in_flight() -> None:
    lock = threading.Lock()
    running = 0
    peak = 0

    def work(n: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.01 * (n % 3))
        with lock:
            running -= 1
        return n * n

    assert list(readahead.read_ahead(range(20), work, 2)) == [n * n for n in range(20)]
    assert peak <= 3  # two workers, and the consumer running one it took back
    assert stats.threads_started <= 2
    assert stats.pools_created == 1


def test_an_error_is_raised_at_its_item_and_the_work_after_it_is_dropped() -> None:
    seen: list[int] = []

    def work(n: int) -> int:
        seen.append(n)
        if n == 3:
            raise ValueError("item 3")
        return n

    results = readahead.read_ahead(range(100), work, 2)
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="item 3"):
        next(results)
    assert max(seen) < 10  # not every item was started


def test_nested_use_from_a_worker_runs_inline_and_does_not_starve() -> None:
    # Every pool thread runs a task that waits for work of its own: without the inline
    # rule each would wait for a task queued behind it, forever.
    in_pool: list[bool] = []

    def outer(n: int) -> list[int]:
        in_pool.append(readahead.in_worker())
        time.sleep(0.01)  # both pool threads are taken before any nested work is asked
        return list(readahead.read_ahead(range(n, n + 3), lambda m: m * 10, 2))

    lane = readahead.Lane(2)
    futures = [lane.start(outer, n) for n in range(6)]
    done = [f.result(timeout=10) for f in futures]
    assert all(in_pool)
    assert len(in_pool) == 6
    assert done == [[m * 10 for m in range(n, n + 3)] for n in range(6)]
    assert stats.threads_started <= 2


def test_a_consumer_takes_back_work_the_busy_pool_has_not_started() -> None:
    # Another use holds every pool thread until the consumer below is done.
    release = threading.Event()
    hog = readahead.Lane(2)
    held = [hog.start(release.wait, 10) for _ in range(2)]
    done: list[int] = []
    thread = threading.Thread(
        target=lambda: done.extend(readahead.read_ahead(range(5), lambda n: n + 1, 2)), daemon=True
    )
    thread.start()
    thread.join(10)
    release.set()
    assert not thread.is_alive(), "read-ahead waited for a busy pool"
    assert done == [1, 2, 3, 4, 5]
    hog.close()
    assert all(f.done() for f in held)


def test_page_prefetch_reads_a_partition_itself_when_the_pool_is_busy() -> None:
    release = threading.Event()
    hog = readahead.Lane(2)
    for _ in range(2):
        hog.start(release.wait, 10)
    prefetch = PagePrefetch(lambda key: iter([f"{key}-1", f"{key}-2"]), ["a", "b"], 2, 4)
    try:
        pages = [page for key in ("a", "b") for page in prefetch.pages(key)]
    finally:
        release.set()
        prefetch.close()
        hog.close()
    assert pages == ["a-1", "a-2", "b-1", "b-2"]


def test_page_prefetch_failure_fails_its_own_partition() -> None:
    def read(key: str) -> Iterator[str]:
        if key == "b":
            raise RuntimeError("b broke")
        yield key

    prefetch = PagePrefetch(read, ["a", "b", "c"], 2, 4)
    try:
        assert list(prefetch.pages("a")) == ["a"]
        with pytest.raises(RuntimeError, match="b broke"):
            list(prefetch.pages("b"))
        assert list(prefetch.pages("c")) == ["c"]
    finally:
        prefetch.close()


def test_a_lane_runs_at_most_its_width_and_in_order() -> None:
    lock = threading.Lock()
    started: list[int] = []
    running = 0
    peak = 0

    def work(n: int) -> None:
        nonlocal running, peak
        with lock:
            started.append(n)
            running += 1
            peak = max(peak, running)
        time.sleep(0.005)
        with lock:
            running -= 1

    readahead.configure(4)
    lane = readahead.Lane(2)
    futures = [lane.start(work, n) for n in range(10)]
    for future in futures:
        future.result(timeout=10)
    lane.close(wait=True)
    assert peak <= 2
    assert sorted(started) == list(range(10))
    assert sorted(started[:2]) == [0, 1]


def test_closing_a_lane_drops_what_has_not_started() -> None:
    release = threading.Event()
    lane = readahead.Lane(1)
    first = lane.start(release.wait, 10)
    queued = [lane.start(lambda: None) for _ in range(3)]
    release.set()
    lane.close(wait=True)
    assert first.result() is True
    assert all(f.cancelled() or f.done() for f in queued)


def test_shutdown_ends_the_pool_and_the_next_use_makes_a_new_one() -> None:
    assert list(readahead.read_ahead([1, 2], lambda n: n, 2)) == [1, 2]
    readahead.shutdown()
    assert not [t for t in threading.enumerate() if t.name.startswith(readahead.THREAD_PREFIX)]
    assert list(readahead.read_ahead([3, 4], lambda n: n, 2)) == [3, 4]
    assert stats.pools_created == 2


@contextlib.contextmanager
def pool_held_elsewhere() -> Iterator[None]:
    """Both of the pool's threads busy with another lane's tasks until the block ends."""
    release = threading.Event()
    hog = readahead.Lane(2)
    for _ in range(2):
        hog.start(release.wait, 10)
    try:
        yield
    finally:
        release.set()
        hog.close()


def test_as_completed_runs_a_task_itself_when_the_pool_is_busy_elsewhere() -> None:
    lane = readahead.Lane(2)
    started = time.monotonic()
    try:
        with pool_held_elsewhere():
            futures = [lane.start(lambda n: n * 2, n) for n in range(3)]
            results = sorted(f.result() for f in lane.as_completed(futures, idle=0.05))
    finally:
        lane.close()
    assert results == [0, 2, 4]
    assert time.monotonic() - started < 5  # not after the other use let go


def test_take_back_gives_a_task_not_started_only_while_none_of_them_runs() -> None:
    lane = readahead.Lane(2)
    with pool_held_elsewhere():
        futures = [lane.start(lambda n: n, n) for n in range(3)]
        taken = lane.take_back(futures)
        assert taken is futures[0]
        assert taken.cancelled()
        assert lane.take_back(futures[1:]) is futures[1]
    running = readahead.Lane(1)
    gate = threading.Event()
    busy = running.start(gate.wait, 10)
    queued = running.start(lambda: None)
    deadline = time.monotonic() + 5
    while not busy.running() and time.monotonic() < deadline:
        time.sleep(0.005)
    try:
        assert running.take_back([busy, queued]) is None  # one of them runs: wait for it
    finally:
        gate.set()
        running.close()
    lane.close()


def test_as_completed_carries_each_task_error() -> None:
    def work(n: int) -> int:
        if n == 1:
            raise ValueError("one")
        return n

    lane = readahead.Lane(2)
    outcomes = []
    for future in lane.as_completed([lane.start(work, n) for n in range(3)]):
        outcomes.append(repr(future.exception()) if future.exception() else future.result())
    lane.close()
    assert sorted(map(str, outcomes)) == ["0", "2", "ValueError('one')"]


# -- the whole tap -------------------------------------------------------------------------

PACKAGE = Path(__file__).resolve().parents[1] / "tap_dataplatforms"
THREAD_MAKERS = {"Thread", "Timer", "ThreadPoolExecutor", "ProcessPoolExecutor", "Process", "Pool"}


def thread_makers(path: Path) -> list[str]:
    """Where a module names a way to start threads or processes of its own."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module in (
            "threading",
            "concurrent.futures",
            "concurrent.futures.thread",
            "multiprocessing",
            "_thread",
        ):
            found += [
                f"{a.name} (line {node.lineno})" for a in node.names if a.name in THREAD_MAKERS
            ]
        elif isinstance(node, ast.Import):
            found += [
                f"import {a.name} (line {node.lineno})"
                for a in node.names
                if a.name in ("multiprocessing", "_thread", "concurrent.futures")
            ]
        elif isinstance(node, ast.Attribute) and node.attr in THREAD_MAKERS:
            found.append(f".{node.attr} (line {node.lineno})")
    return found


def test_no_module_but_the_read_ahead_starts_threads() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): found
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != PACKAGE / "core" / "readahead.py"
        for found in [thread_makers(path)]
        if found
    }
    assert offenders == {}
    assert thread_makers(PACKAGE / "core" / "readahead.py")  # the check sees the pool


def test_a_full_sync_of_every_platform_runs_on_one_pool_of_max_concurrency_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(PlatformStream, "retry_base_seconds", 0.01)
    roomy = {name: (1_000_000, 60.0) for name in ("redivis", "dexi", "reinfer", "datalinx")}
    sb = Sandbox(seed=5, scale=1, limits=roomy, glitches=False).start()
    sb.invision.lose_start_answers = False  # what a lost start costs is tested elsewhere
    try:
        readahead.shutdown()
        config = all_platforms(sb, tmp_path, trigger=True)
        # File downloads are held to 15 a second; their read-ahead is Dexi's own test.
        config["dexi"]["download_files"] = False
        # InVision's log is read a day per request: its last days only.
        config["start_date"] = (dt.datetime.now(dt.UTC) - dt.timedelta(days=3)).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        tap = make_tap({**config, "max_concurrency": 3})
        stats.reset()
        before = {t.ident for t in threading.enumerate()}
        peak: dict[str, int] = {"workers": 0}
        others: set[str] = set()
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                new = [t for t in threading.enumerate() if t.ident not in before]
                workers = [t for t in new if t.name.startswith(readahead.THREAD_PREFIX)]
                peak["workers"] = max(peak["workers"], len(workers))
                # The sandbox answers each request in a thread of its own.
                others.update(
                    t.name
                    for t in new
                    if t not in workers
                    and "process_request_thread" not in t.name
                    and t is not sampler
                )
                time.sleep(0.002)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            out = run_sync(tap)
        finally:
            stop.set()
            sampler.join()
    finally:
        sb.stop()
    platforms = {name.split("_")[0] for name, rows in out.records.items() if rows}
    assert platforms == {"dexi", "reinfer", "redivis", "invision", "datalinx"}
    assert out.records["invision_dataflow_runs"]  # the runs' pool was used too
    assert 1 <= peak["workers"] <= 3
    assert stats.threads_started <= 3
    assert stats.pools_created == 1
    assert others == set()
    # Shut down at the end of the sync.
    assert not [t for t in threading.enumerate() if t.name.startswith(readahead.THREAD_PREFIX)]
