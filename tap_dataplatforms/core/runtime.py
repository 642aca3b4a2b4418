"""What one tap process shares across its streams: budgets, failures, counters."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import requests

from tap_dataplatforms.core.budget import SYSTEM_CLOCK, BudgetRegistry, Clock
from tap_dataplatforms.core.config import PlatformSpec
from tap_dataplatforms.core.errors import EXIT_CONFIG, EXIT_OK, EXIT_PARTIAL
from tap_dataplatforms.core.settings import Settings

logger = logging.getLogger("tap-dataplatforms")


@dataclass(frozen=True)
class Failure:
    partition: str
    message: str
    #: The configuration or credentials are at fault (exit code 2 rather than 3).
    credentials: bool = False
    #: The streams this failure left incomplete (their child streams are too); ``None``:
    #: not known, so every stream counts as incomplete (core/versions.py activates none).
    streams: tuple[str, ...] | None = None


class Runtime:
    """Shared state of one sync; the tap owns one, streams reach it as ``self.runtime``."""

    def __init__(
        self,
        settings: Settings,
        platforms: Iterable[PlatformSpec],
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.specs = {spec.key: spec for spec in platforms}
        #: The typed settings, parsed once by the tap.
        self.settings = settings
        self.budgets = BudgetRegistry(self.settings.common.rate_limit_backend, clock)
        self.failures: list[Failure] = []
        #: Items skipped by a documented rule (a Dexi result that is gone): named in the
        #: final summary, not failures.
        self.skipped: list[Failure] = []
        self.counters: Counter[str] = Counter()
        #: stream name -> requests, retries, http_429, budget_wait_seconds (run summary)
        self.stream_counters: dict[str, Counter[str]] = {}
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def secret_names(self, platform: str) -> tuple[str, ...]:
        return self.specs[platform].secret_names

    def record_failure(
        self,
        partition: str,
        message: str,
        *,
        credentials: bool = False,
        streams: Iterable[str] | None = None,
    ) -> None:
        """A failed partition; ``streams``: the streams it leaves incomplete (a table
        version is activated for the others, core/versions.py)."""
        named = None if streams is None else tuple(streams)
        with self._lock:
            self.failures.append(Failure(partition, message, credentials, named))

    def record_skip(self, partition: str, message: str) -> None:
        with self._lock:
            self.skipped.append(Failure(partition, message))

    def count_rate_limited(self, platform: str) -> None:
        with self._lock:
            self.counters[f"{platform}.http_429"] += 1

    def count_retry(self, platform: str) -> None:
        with self._lock:
            self.counters[f"{platform}.retries"] += 1

    def count(self, platform: str, name: str, amount: int = 1) -> None:
        """Add to a platform's counter (logged at the end of the sync)."""
        with self._lock:
            self.counters[f"{platform}.{name}"] += amount

    def count_stream(self, stream: str, name: str, amount: float = 1) -> None:
        """Add to one stream's counter (the run summary's columns)."""
        with self._lock:
            counter = self.stream_counters.get(stream)
            if counter is None:
                counter = self.stream_counters[stream] = Counter()
            counter[name] += amount  # type: ignore[assignment]

    def warn_once(self, text: str) -> None:
        with self._lock:
            if text in self._warned:
                return
            self._warned.add(text)
        logger.warning("%s", text)

    def note_response(self, platform: str, response: requests.Response) -> None:
        with self._lock:
            self.counters[f"{platform}.requests"] += 1

    def exit_code(self) -> int:
        if not self.failures:
            return EXIT_OK
        return EXIT_CONFIG if any(f.credentials for f in self.failures) else EXIT_PARTIAL

    def summary_lines(self) -> list[str]:
        lines = [f"{len(self.failures)} partition(s) failed:"]
        lines += [f"  {f.partition}: {f.message}" for f in self.failures]
        return lines + self.skipped_lines()

    def skipped_lines(self) -> list[str]:
        if not self.skipped:
            return []
        lines = [f"{len(self.skipped)} item(s) gone at the platform, skipped:"]
        return lines + [f"  {f.partition}: {f.message}" for f in self.skipped]
