"""Seeded fault injection: a fraction of requests fail the way real networks and servers do.

A request is picked with probability ``rate`` (from one seeded generator, so a run with the
same seed and the same request order sees the same faults); a picked request gets one kind,
chosen uniformly among the kinds that apply to it:

- ``429``: the platform's own rate-limit answer and wait-hint form (``limit_retry_after``);
- ``500``, ``502``, ``503``, ``504``: the platform's error body for that status (a platform
  that answers every failure with one status, like InVision's 500, lists only that one in
  ``Platform.fault_statuses``);
- ``drop``: the connection is closed without any answer;
- ``expired``: a short-lived credential is answered as expired (and really expires), only
  where the platform has one (``Platform.credential_can_expire``);
- ``truncated``: status 200 with about the first half of the JSON body (ending one byte
  into a multi-byte UTF-8 character when one follows the middle);
- ``cut``: status 200, then the connection drops mid-body (the body goes out chunked and
  stops after its first part, without the closing chunk; a whole body is cut as for
  ``truncated``, so inside a multi-byte character when it can);
- ``utf8``: status 200 and a well-framed body that stops one byte into a multi-byte UTF-8
  character (only bodies that hold one);
- ``eos``: a streamed body (Redivis read streams) that ends cleanly at a batch boundary,
  early, without the end-of-stream batch the client asked for;
- ``slow``: the answer comes ``slow_seconds`` late, after the client's read timeout.

Faults must never change the data. Every kind but the last five is answered before the
handler runs, so a faulted request has no side effect (no run started, no read session
opened, no cursor moved). ``truncated``, ``cut``, ``utf8``, ``eos`` and ``slow`` run the
handler, so they pick requests the platform calls read-only (``Platform.is_read_only``).
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass

#: Every kind, in the order figures list them.
FAULT_KINDS = (
    "429",
    "500",
    "502",
    "503",
    "504",
    "drop",
    "expired",
    "truncated",
    "cut",
    "utf8",
    "eos",
    "slow",
)
#: Kinds answered before the handler runs.
PRE_HANDLER_KINDS = frozenset({"429", "500", "502", "503", "504", "drop", "expired"})


@dataclass(frozen=True)
class FaultPlan:
    """What to inject: the share of requests, the seed, and the tuning of two kinds."""

    rate: float = 0.0
    seed: int = 0
    kinds: tuple[str, ...] = FAULT_KINDS
    #: How late a ``slow`` answer is; pick it above the client's read timeout.
    slow_seconds: float = 3.0
    #: The wait an injected 429 asks for.
    wait_seconds: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError("fault rate must be between 0 and 1")
        unknown = sorted(set(self.kinds) - set(FAULT_KINDS))
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; known: {', '.join(FAULT_KINDS)}")
        if self.slow_seconds < 0 or self.wait_seconds < 0:
            raise ValueError("slow_seconds and wait_seconds must be >= 0")


class FaultInjector:
    """Draws faults for requests and counts what it injected, per platform and kind."""

    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self._rng = random.Random(f"faults:{plan.seed}")
        self._lock = threading.Lock()
        self._counts: dict[str, Counter[str]] = {}

    def draw(self, platform: str, applicable: list[str]) -> str | None:
        """A kind for this request, or ``None``; ``applicable`` is in FAULT_KINDS order."""
        plan = self.plan
        if plan.rate <= 0.0:
            return None
        kinds = [k for k in applicable if k in plan.kinds]
        with self._lock:
            # The generator advances once per request whatever applies, so one kind being
            # inapplicable does not shift the draws of the requests after it.
            roll = self._rng.random()
            pick = self._rng.random()
        if roll >= plan.rate or not kinds:
            return None
        return kinds[min(int(pick * len(kinds)), len(kinds) - 1)]

    def count(self, platform: str, kind: str) -> None:
        """Record one fault as injected (called once it has really been applied)."""
        with self._lock:
            self._counts.setdefault(platform, Counter())[kind] += 1

    def counts(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {
                name: {k: counter[k] for k in FAULT_KINDS if counter[k]}
                for name, counter in sorted(self._counts.items())
            }
