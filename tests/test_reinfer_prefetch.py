"""Re:infer comment pages of later sources read ahead (max_concurrency) while one is emitted."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests_mock as rm

from dataplatforms_sandbox import Sandbox
from tap_dataplatforms.core.http import PlatformStream
from tap_dataplatforms.core.readahead import PagePrefetch
from tests.helpers import FakeClock, make_tap, run_sync
from tests.test_reinfer_sandbox import COMMENTS, ROOMY, only, reinfer_config, run_ordered
from tests.test_reinfer_unit import DIRECT, comment, mock_base
from tests.test_reinfer_unit import config as unit_config
from tests.test_reinfer_unit import only as unit_only


def pages_of(n: int) -> Any:
    def read(key: Any) -> Iterator[list[int]]:
        for page in range(n):
            yield [key, page]

    return read


def test_pages_come_in_order_per_partition() -> None:
    prefetch = PagePrefetch(pages_of(5), ["a", "b", "c"], workers=2, depth=2)
    try:
        for key in ("a", "b", "c"):
            assert list(prefetch.pages(key)) == [[key, n] for n in range(5)]
    finally:
        prefetch.close()


def test_a_partition_passed_over_is_given_up_and_the_next_ones_still_come() -> None:
    prefetch = PagePrefetch(pages_of(50), ["a", "b", "c", "d"], workers=2, depth=1)
    try:
        # "a" and "b" are never read: their workers must not hold the pool.
        assert list(prefetch.pages("c"))[-1] == ["c", 49]
        assert len(list(prefetch.pages("d"))) == 50
        assert "a" not in prefetch
    finally:
        prefetch.close()


def test_an_error_reaches_the_reader_of_its_partition_only() -> None:
    def read(key: Any) -> Iterator[list[Any]]:
        yield [key]
        if key == "a":
            raise RuntimeError("boom")

    prefetch = PagePrefetch(read, ["a", "b"], workers=2, depth=4)
    try:
        pages = prefetch.pages("a")
        assert next(pages) == ["a"]
        with pytest.raises(RuntimeError, match="boom"):
            next(pages)
        assert list(prefetch.pages("b")) == [["b"]]
    finally:
        prefetch.close()


def test_later_partitions_wait_for_the_first_page_of_the_first() -> None:
    started: list[str] = []
    release = threading.Event()

    def read(key: Any) -> Iterator[list[Any]]:
        started.append(key)
        if key == "a":
            release.wait(5)
        yield [key]

    prefetch = PagePrefetch(read, ["a", "b", "c"], workers=3, depth=4)
    try:
        time.sleep(0.3)
        assert started == ["a"]
        release.set()
        assert list(prefetch.pages("a")) == [["a"]]
        assert list(prefetch.pages("b")) == [["b"]]
    finally:
        prefetch.close()


def test_close_ends_workers_blocked_on_a_full_queue() -> None:
    prefetch = PagePrefetch(pages_of(1000), ["a", "b"], workers=2, depth=1)
    time.sleep(0.1)
    started = time.monotonic()
    prefetch.close()
    assert time.monotonic() - started < 5


def test_workers_never_closed_do_not_keep_the_process_alive() -> None:
    # A sync that dies without closing its read-ahead (an unexpected error whose
    # traceback Python keeps) must still exit: blocked workers end at shutdown.
    code = (
        "from tap_dataplatforms.core.readahead import PagePrefetch\n"
        "import time\n"
        "def read(key):\n"
        "    yield from range(1000)\n"
        "prefetch = PagePrefetch(read, ['a', 'b'], workers=2, depth=1)\n"
        "time.sleep(0.3)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], timeout=20, check=False)
    assert done.returncode == 0


@pytest.mark.untimed
def test_a_concurrent_sync_writes_what_a_sequential_one_does() -> None:
    messages = {}
    for workers in (1, 4):
        with Sandbox(seed=5, scale=1, limits=ROOMY, bulk={"reinfer": (3000, 700)}) as sb:
            config = reinfer_config(sb)
            config["max_concurrency"] = workers
            tap = only(make_tap(config), "reinfer_sources", COMMENTS)
            out = run_ordered(tap)
            for message in out:
                message.pop("time_extracted", None)
                # reinfer_sources is full-table: its table version is the sync's start time
                message.pop("version", None)
                # the signpost is the wall-clock time a partition started: it differs
                for partition in (
                    message.get("value", {})
                    .get("bookmarks", {})
                    .get(COMMENTS, {})
                    .get("partitions", [])
                ):
                    partition.pop("replication_key_signpost", None)
            messages[workers] = out
    assert messages[1] == messages[4]
    records = [m for m in messages[4] if m["type"] == "RECORD" and m["stream"] == COMMENTS]
    assert len(records) > 3000


def test_a_page_that_is_not_json_is_fetched_again_when_read_ahead(
    requests_mock: rm.Mocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(PlatformStream, "retry_base_seconds", 0.001)
    mock_base(requests_mock)
    page = {"status": "ok", "comments": [comment(1, "2024-05-01T10:00:00Z")]}
    requests_mock.get(
        f"{DIRECT}/api/_private/sources/acme/inbox/comments",
        [{"text": "<html>proxy</html>"}, {"json": {**page, "continuation": None}}],
    )
    requests_mock.get(
        f"{DIRECT}/api/_private/sources/acme/calls/comments",
        json={**page, "continuation": None},
    )
    settings = unit_config()
    settings["max_concurrency"] = 4
    tap = unit_only(make_tap(settings, clock=FakeClock()), "reinfer_comments")
    records = run_sync(tap).records["reinfer_comments"]
    assert sorted((r["source_id"], r["id"]) for r in records) == [
        ("src-1", "msg-1"),
        ("src-2", "msg-1"),
    ]
