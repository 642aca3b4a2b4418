"""The one worker pool of the process, and the read-ahead built on it.

Every platform overlaps requests the same way: work is handed to one process-wide pool of
``max_concurrency`` threads (the one setting; :func:`configure` is called when the tap
parses its settings), created at first use and shut down when the sync ends. A use of the
pool is a :class:`Lane`: at most ``width`` of its tasks run at once, started in the order
given, each with a future that carries its result or its error to whoever waits on it.

Two rules keep a shared, bounded pool from starving itself:

- Work is handed to the pool at one level only: a task started from a pool thread runs
  inline, in that thread, so a worker never waits for a task queued behind it.
- Whoever waits for a task that has not started yet takes it back and runs it itself
  (:meth:`Lane.steal`, which :func:`read_ahead` and the prefetches use): a consumer never
  waits for a task held up behind other uses' busy workers.

Every request still goes through its platform's budget; the pool only bounds how many
threads wait on it.
"""

from __future__ import annotations

import queue
import threading
import weakref
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

THREAD_PREFIX = "dataplatforms-worker"
DEFAULT_SIZE = 4
#: How long a consumer waits on a task before it looks for one the pool did not start.
IDLE_WAIT_SECONDS = 0.5

_lock = threading.Lock()
_size = DEFAULT_SIZE
_executor: ThreadPoolExecutor | None = None
_local = threading.local()


def _thread_started() -> None:
    _local.worker = True


def in_worker() -> bool:
    """Whether the current thread is one of the pool's."""
    return bool(getattr(_local, "worker", False))


def configure(size: int) -> None:
    """The pool's size (``max_concurrency``); a pool of another size is replaced once idle
    work has drained (its threads finish what they run and exit)."""
    global _size, _executor
    size = max(1, int(size))
    with _lock:
        if size == _size:
            return
        _size = size
        old, _executor = _executor, None
    if old is not None:
        old.shutdown(wait=False)


def size() -> int:
    return _size


def executor() -> ThreadPoolExecutor:
    """The process's pool, created at first use."""
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                _size, thread_name_prefix=THREAD_PREFIX, initializer=_thread_started
            )
        return _executor


def shutdown(wait: bool = True) -> None:
    """Stop the pool (the end of a sync): running tasks finish, queued ones are dropped."""
    global _executor
    with _lock:
        old, _executor = _executor, None
    if old is not None:
        old.shutdown(wait=wait, cancel_futures=True)


class Lane:
    """Tasks on the shared pool, at most ``width`` running at once, started in order."""

    def __init__(self, width: int) -> None:
        self.width = max(1, width)
        self._lock = threading.Lock()
        self._waiting: deque[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]] = deque()
        self._active = 0
        self._futures: list[Future[Any]] = []
        self._calls: dict[Future[Any], tuple[Callable[..., Any], tuple[Any, ...]]] = {}

    def start(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """``fn(*args)`` as soon as the lane has room; from a pool thread, right here."""
        future: Future[T] = Future()
        if in_worker():
            _run(future, fn, args)
            return future
        with self._lock:
            self._futures.append(future)
            self._calls[future] = (fn, args)
            if self._active >= self.width:
                self._waiting.append((future, fn, args))
                return future
            self._active += 1
        self._dispatch(future, fn, args)
        return future

    def _dispatch(self, future: Future[Any], fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            executor().submit(self._task, future, fn, args)
        except RuntimeError:  # the pool is shutting down (the end of a sync)
            future.cancel()
            self._settle()

    def _task(self, future: Future[Any], fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            _run(future, fn, args)
        finally:
            self._settle()

    def _settle(self) -> None:
        with self._lock:
            self._active -= 1
            following = self._waiting.popleft() if self._waiting else None
            if following is not None:
                self._active += 1
        if following is not None:
            self._dispatch(*following)

    @staticmethod
    def steal(future: Future[Any]) -> bool:
        """Take back a task that has not started: ``True`` when the caller must run it."""
        return future.cancel()

    def take_back(self, futures: Iterable[Future[T]]) -> Future[T] | None:
        """One of ``futures`` that no worker took up, taken back for the caller to run,
        when none of them runs (the pool is busy elsewhere); ``None`` otherwise."""
        futures = list(futures)
        if any(future.running() for future in futures):
            return None
        return next((future for future in futures if self.steal(future)), None)

    def as_completed(
        self, futures: Iterable[Future[T]], idle: float = IDLE_WAIT_SECONDS
    ) -> Iterator[Future[T]]:
        """The futures as they finish. When none finished for ``idle`` seconds and none
        of them runs (the pool is busy elsewhere), one not started is run here."""
        pending = set(futures)
        while pending:
            done, _ = wait_futures(pending, timeout=idle, return_when=FIRST_COMPLETED)
            if done:
                pending -= done
                yield from done
                continue
            taken = self.take_back(pending)
            if taken is not None:
                pending.discard(taken)
                fn, args = self._calls[taken]
                here: Future[T] = Future()
                _run(here, fn, args)
                yield here

    def close(self, wait: bool = True) -> None:
        """Drop the tasks not started; with ``wait``, wait for the running ones."""
        with self._lock:
            futures, self._futures = self._futures, []
            self._calls.clear()
        # A future cancelled here never ran; one that could not be is running or done.
        running = [future for future in futures if not future.cancel()]
        if wait:
            wait_futures(running)


def _run(future: Future[T], fn: Callable[..., T], args: tuple[Any, ...]) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = fn(*args)
    except BaseException as exc:  # carried to whoever waits on the future
        future.set_exception(exc)
    else:
        future.set_result(result)


def read_ahead(items: Iterable[T], fn: Callable[[T], R], window: int) -> Iterator[R]:
    """``fn(item)`` for every item, in order, up to ``window`` of them computed ahead.

    The first error is raised where its item's result would be; the work ahead of it is
    dropped (what runs already is waited for). A result whose task has not started is
    computed here, in the caller's thread."""
    lane = Lane(window)
    source = iter(items)
    pending: deque[tuple[T, Future[R]]] = deque()

    def fill() -> None:
        while len(pending) < lane.width:
            try:
                item = next(source)
            except StopIteration:
                return
            pending.append((item, lane.start(fn, item)))

    try:
        fill()
        while pending:
            item, future = pending.popleft()
            result = fn(item) if lane.steal(future) else future.result()
            fill()
            yield result
    finally:
        lane.close(wait=True)


# -- pages of several partitions -------------------------------------------------------
#
# Pages of several partitions read ahead, in the order a sync will ask for them.
#
# Within one partition pages usually form a chain (page n+1 needs page n's cursor), so
# nothing overlaps there; across partitions it can. While the sync emits one partition, up
# to ``workers`` later ones are read in the background (every request inside the
# platform's budget, as always), in the order the sync will ask for them. Each holds at
# most ``depth`` pages, so memory stays bounded however large a partition is.
#
# Used for Re:infer comments (sources) and Redivis metadata (a dataset's tables and their
# variables). The partitions are read on the process's one pool (above); one the sync
# asks for before a worker took it up is read in the sync's own thread.

_DONE = object()
_PUT_WAIT_SECONDS = 0.2

#: Read-aheads not closed yet. A sync that dies without closing one (an unexpected error
#: whose traceback Python keeps) must still let the process exit: the interpreter joins
#: the pool's threads at shutdown, so their tasks are stopped first.
_OPEN: weakref.WeakSet[PagePrefetch] = weakref.WeakSet()


def _at_exit() -> None:
    """At interpreter exit, before the pools' own hook joins their threads: read-aheads
    still open stop, and queued work is dropped, not run."""
    for prefetch in list(_OPEN):
        prefetch._stop.set()
    shutdown(wait=False)


# Hooks registered later run first: this one before the pools' own (registered when
# concurrent.futures.thread is imported, above).
_register_atexit = getattr(threading, "_register_atexit", None)
if _register_atexit is not None:
    _register_atexit(_at_exit)


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
        self.name = name
        self._lane = Lane(workers)
        _OPEN.add(self)
        # The feed goes with the task: the reader may take it off the table first.
        self._tasks = {
            key: self._lane.start(self._run, key, self._feeds[key]) for key in self._order
        }

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
        task = self._tasks.pop(key, None)
        if task is not None and self._lane.steal(task):
            # No worker took it up yet (the pool is busy elsewhere): read it right here.
            for page in self._read_pages(key):
                self._opened.set()
                yield page
            return
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
        self._tasks.clear()
        self._lane.close(wait=True)
