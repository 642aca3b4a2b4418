"""Request budgets: how many requests a platform account may send, enforced before sending.

The counting is pyrate-limiter's; this module adds what the tap needs around it:
an injectable clock (tests pace a budget without sleeping), a pause that server
headers can impose on every user of the budget, and one function that chooses the
bucket backend from ``rate_limit_backend``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import cast

from pyrate_limiter import (
    AbstractBucket,
    AbstractClock,
    InMemoryBucket,
    Rate,
    RateItem,
    StateBucket,
    TokenBucket,
)

from tap_dataplatforms.core.errors import ConfigError

logger = logging.getLogger("tap-dataplatforms.budget")

_LEAK_EVERY = 256


class Clock:
    """Wall time, monotonic time and sleep, replaceable in tests."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


SYSTEM_CLOCK = Clock()


class _ClockedMemoryBucket(InMemoryBucket):
    """An in-memory bucket whose timestamps come from the budget's clock."""

    def __init__(self, rates: list[Rate], clock: Clock) -> None:
        super().__init__(rates)
        self._budget_clock = clock

    def now(self) -> int:
        return int(self._budget_clock.monotonic() * 1000)


class _BudgetClockAdapter(AbstractClock):
    """pyrate-limiter's clock interface over the budget's clock (milliseconds)."""

    def __init__(self, clock: Clock) -> None:
        self._budget_clock = clock

    def now(self) -> int:
        return int(self._budget_clock.monotonic() * 1000)


def rates_per_second(requests_per_second: float) -> list[Rate]:
    """Express a (possibly fractional) requests-per-second budget as pyrate-limiter rates."""
    if requests_per_second <= 0:
        raise ConfigError(f"a request budget must be positive, got {requests_per_second}")
    if requests_per_second >= 1:
        if float(requests_per_second).is_integer():
            return [Rate(int(requests_per_second), 1000)]
        return [Rate(max(1, math.floor(requests_per_second * 10)), 10_000)]
    return [Rate(1, math.ceil(1000 / requests_per_second))]


def with_cap(rates: list[Rate], cap: Rate) -> list[Rate]:
    """Add a platform's documented longer-window cap where it binds.

    pyrate-limiter wants windows ordered generous-before-tight: longer windows with
    larger limits and lower density, so a cap that never binds is left out.
    """
    last = rates[-1]
    if last.interval >= cap.interval or last.limit / last.interval <= cap.limit / cap.interval:
        return rates
    if last.limit >= cap.limit:
        rates = [*rates[:-1], Rate(cap.limit - 1, last.interval)]
    return [*rates, cap]


def make_bucket(backend: str, rates: list[Rate], *, clock: Clock) -> AbstractBucket:
    """Choose the bucket that holds a budget's counts (the one place that does)."""
    if backend == "memory":
        if any(rate.burst != rate.limit for rate in rates):
            # A rate with its own burst is a token bucket: `limit` per `interval`
            # sustained, never more than `burst` at once (windows ignore burst).
            return StateBucket(rates, algorithm=TokenBucket(), clock=_BudgetClockAdapter(clock))
        return _ClockedMemoryBucket(rates, clock)
    scheme = backend.split(":", 1)[0]
    if scheme in {"sqlite", "redis"}:
        raise ConfigError(
            f"rate_limit_backend: '{scheme}' budgets are not available in this version; "
            "use 'memory'"
        )
    raise ConfigError(
        "rate_limit_backend: expected 'memory', 'sqlite:///PATH' or 'redis://HOST:PORT/DB'"
    )


def credential_fingerprint(*parts: str) -> str:
    """A stable, non-reversible name for a credential (never the secret itself)."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return digest[:16]


@dataclass
class Budget:
    """One platform account's request budget."""

    name: str
    rates: list[Rate]
    bucket: AbstractBucket
    clock: Clock = SYSTEM_CLOCK
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _paused_until: float = 0.0  # monotonic
    _puts: int = 0
    waited_seconds: float = 0.0
    acquired: int = 0

    def acquire(self) -> float:
        """Block until one more request fits the budget; return the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                pause = self._paused_until - self.clock.monotonic()
                if pause <= 0:
                    item = RateItem(self.name, cast("int", self.bucket.now()), 1)
                    if self.bucket.put(item):
                        self._puts += 1
                        if self._puts % _LEAK_EVERY == 0:
                            self.bucket.leak(item.timestamp)
                        self.acquired += 1
                        self.waited_seconds += waited
                        return waited
                    wait_ms = self.bucket.waiting(item)
                    pause = max(cast("int", wait_ms), 1) / 1000.0
            self.clock.sleep(pause)
            waited += pause

    def pause_until(self, instant: float, *, reason: str) -> float:
        """Hold every request of this budget until the wall-clock ``instant``.

        Returns the pause in seconds from now. Pauses only ever extend.
        """
        now_wall = self.clock.time()
        seconds = instant - now_wall
        if seconds <= 0:
            return 0.0
        with self._lock:
            target = self.clock.monotonic() + seconds
            if target > self._paused_until:
                self._paused_until = target
                logger.info("Budget %s paused %.2fs (%s)", self.name, seconds, reason)
        return seconds

    def paused_for(self) -> float:
        return max(0.0, self._paused_until - self.clock.monotonic())


class BudgetRegistry:
    """The budgets of one tap process, one per platform and credential."""

    def __init__(self, backend: str = "memory", clock: Clock = SYSTEM_CLOCK) -> None:
        self.backend = backend
        self.clock = clock
        self._budgets: dict[str, Budget] = {}
        self._lock = threading.Lock()

    def get(
        self, platform: str, credential: Sequence[str], rates: list[Rate], kind: str = "requests"
    ) -> Budget:
        """The budget of ``kind`` (e.g. reads, writes) for one platform credential."""
        name = f"{platform}:{credential_fingerprint(*credential)}:{kind}"
        with self._lock:
            budget = self._budgets.get(name)
            if budget is None:
                bucket = make_bucket(self.backend, rates, clock=self.clock)
                budget = Budget(name=name, rates=rates, bucket=bucket, clock=self.clock)
                self._budgets[name] = budget
            return budget

    def __iter__(self) -> Iterator[Budget]:
        return iter(list(self._budgets.values()))
