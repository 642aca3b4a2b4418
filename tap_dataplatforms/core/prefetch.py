"""Pages of several partitions read ahead, in the order a sync will ask for them.

Within one partition pages usually form a chain (page n+1 needs page n's cursor), so
nothing overlaps there; across partitions it can. While the sync emits one partition, up
to ``workers`` later ones are read in the background (every request inside the
platform's budget, as always), in the order the sync will ask for them. Each holds at
most ``depth`` pages, so memory stays bounded however large a partition is.

Used for Re:infer comments (sources) and Redivis metadata (a dataset's tables and their
variables); Dexi results are single requests and have their own read-ahead.
"""

from __future__ import annotations

import queue
import threading
import weakref
from collections.abc import Callable, Hashable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

_DONE = object()
_PUT_WAIT_SECONDS = 0.2

#: Read-aheads not closed yet. A sync that dies without closing one (an unexpected error
#: whose traceback Python keeps) must still let the process exit: the interpreter joins
#: pool threads at shutdown, so their workers are stopped first.
_OPEN: weakref.WeakSet[PagePrefetch] = weakref.WeakSet()


def _stop_open() -> None:
    for prefetch in list(_OPEN):
        prefetch._stop.set()


# Called at shutdown before the pools' own hook joins their threads (registered later).
_register_atexit = getattr(threading, "_register_atexit", None)
if _register_atexit is not None:
    _register_atexit(_stop_open)


class _Feed:
    def __init__(self, depth: int) -> None:
        self.pages: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.cancelled = threading.Event()


class PagePrefetch:
    """Pages of several partitions fetched ahead, each partition's pages in order.

    ``read_pages(key)`` yields one partition's page bodies in order (it runs in a worker
    thread). Partitions are read in the order of ``keys``, at most ``workers`` at a time;
    the consumer asks for them in that order with :meth:`pages`. A partition passed over
    is cancelled, so its worker never waits for a reader that will not come.
    """

    def __init__(
        self,
        read_pages: Callable[[Any], Iterable[Any]],
        keys: list[Hashable],
        workers: int,
        depth: int,
        name: str = "prefetch",
    ) -> None:
        self._read_pages = read_pages
        self._order = list(keys)
        self._feeds = {key: _Feed(depth) for key in self._order}
        self._stop = threading.Event()
        # The other partitions start once the first one's first page came back: a route
        # or token that fails fails once, not once per worker.
        self._first = self._order[0] if self._order else None
        self._opened = threading.Event()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=name)
        _OPEN.add(self)
        for key in self._order:
            # The feed goes with the task: the reader may take it off the table first.
            self._pool.submit(self._run, key, self._feeds[key])

    def __contains__(self, key: Hashable) -> bool:
        return key in self._feeds

    def _put(self, feed: _Feed, item: Any) -> bool:
        while not (self._stop.is_set() or feed.cancelled.is_set()):
            try:
                feed.pages.put(item, timeout=_PUT_WAIT_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, key: Hashable, feed: _Feed) -> None:
        while key != self._first and not self._opened.wait(_PUT_WAIT_SECONDS):
            if self._stop.is_set() or feed.cancelled.is_set():
                return
        if feed.cancelled.is_set() or self._stop.is_set():
            return
        try:
            for page in self._read_pages(key):
                if not self._put(feed, page):
                    return
                self._opened.set()
            self._put(feed, _DONE)
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(feed, exc)

    def pages(self, key: Hashable) -> Iterator[Any]:
        """The pages of ``key``, in order; partitions before it are given up."""
        while self._order and self._order[0] != key:
            skipped = self._feeds.pop(self._order.pop(0), None)
            if skipped is not None:
                skipped.cancelled.set()
        if self._order:
            self._order.pop(0)
        feed = self._feeds.pop(key)
        if key != self._first:
            self._opened.set()  # the sync went past the first partition, whatever it did
        try:
            while True:
                item = feed.pages.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            feed.cancelled.set()

    def close(self) -> None:
        self._stop.set()
        _OPEN.discard(self)
        for feed in self._feeds.values():
            feed.cancelled.set()
        self._feeds.clear()
        self._order.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)
