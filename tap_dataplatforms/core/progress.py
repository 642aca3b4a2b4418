"""Progress lines on stderr for long partitions: at most one every ten seconds."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

INTERVAL_SECONDS = 10.0


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d}"


class Progress:
    """Counts one partition's records; percent and ETA when the platform gives a total."""

    def __init__(
        self,
        label: str,
        logger: logging.Logger,
        *,
        clock: Callable[[], float] = time.monotonic,
        interval: float = INTERVAL_SECONDS,
    ) -> None:
        self.label = label
        self.logger = logger
        self.clock = clock
        self.interval = interval
        self.total: int | None = None
        self.count = 0
        self.started = clock()
        self._last_report = self.started

    def advance(self, records: int = 1) -> None:
        self.count += records
        now = self.clock()
        if now - self._last_report >= self.interval:
            self._last_report = now
            self.logger.info("%s", self.line(now))

    def line(self, now: float | None = None) -> str:
        now = self.clock() if now is None else now
        elapsed = now - self.started
        text = f"Progress {self.label}: {self.count} records"
        if self.total:
            share = min(self.count / self.total, 1.0)
            text += f" of {self.total} ({share:.0%})"
            if self.count and share < 1.0:
                eta = elapsed * (self.total - self.count) / self.count
                text += f", ETA {_duration(eta)}"
        rate = self.count / elapsed if elapsed > 0 else 0.0
        return text + f", {rate:.0f} records/s"
