"""Results read ahead, in parallel, while the executions before them are emitted.

One result is one request, so a run with thousands of new executions would otherwise
wait for each round trip in turn. A few results (``max_concurrency``) are fetched ahead
on the process's one pool (``core.readahead``), in the order the executions are emitted,
always inside the account's budget; at most that many bodies are held at once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any

from tap_dataplatforms.core.readahead import Lane


class ResultPrefetch:
    def __init__(self, fetch: Callable[[str], Any], execution_ids: Iterable[str], workers: int):
        self._fetch = fetch
        self._pending = deque(execution_ids)
        self._futures: dict[str, Future[Any]] = {}
        self._lane = Lane(workers)
        self._fill()

    def _fill(self) -> None:
        while self._pending and len(self._futures) < self._lane.width:
            execution_id = self._pending.popleft()
            self._futures[execution_id] = self._lane.start(self._fetch, execution_id)

    def take(self, execution_id: str) -> Future[Any] | None:
        """The fetch of this execution's result, if a worker took it up (then the ones
        ahead); ``None`` when the caller reads it itself."""
        future = self._futures.pop(execution_id, None)
        if future is not None and self._lane.steal(future):
            future = None  # not started: the pool is busy elsewhere
        self._fill()
        return future

    def close(self) -> None:
        self._futures.clear()
        self._pending.clear()
        self._lane.close(wait=True)
