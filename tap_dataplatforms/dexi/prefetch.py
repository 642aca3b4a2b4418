"""Results read ahead, in parallel, while the executions before them are emitted.

One result is one request, so a run with thousands of new executions would otherwise
wait for each round trip in turn. A few results (``max_concurrency``) are fetched ahead,
in the order the executions are emitted, always inside the account's budget; at most that
many bodies are held at once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class ResultPrefetch:
    def __init__(self, fetch: Callable[[str], Any], execution_ids: Iterable[str], workers: int):
        self._fetch = fetch
        self._pending = deque(execution_ids)
        self._futures: dict[str, Future[Any]] = {}
        self._ahead = workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="dexi-result")
        self._fill()

    def _fill(self) -> None:
        while self._pending and len(self._futures) < self._ahead:
            execution_id = self._pending.popleft()
            self._futures[execution_id] = self._pool.submit(self._fetch, execution_id)

    def take(self, execution_id: str) -> Future[Any] | None:
        """The fetch of this execution's result, if it was started (then ahead ones)."""
        future = self._futures.pop(execution_id, None)
        self._fill()
        return future

    def close(self) -> None:
        for future in self._futures.values():
            future.cancel()
        self._futures.clear()
        self._pending.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)
