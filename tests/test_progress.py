"""Progress lines: at most one per interval, with percent and ETA when a total is known."""

from __future__ import annotations

import logging

import pytest

from tap_dataplatforms.core.progress import Progress


def test_progress_reports_every_ten_seconds_with_eta(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    progress = Progress("redivis_rows__t", logging.getLogger("p"), clock=lambda: now[0])
    progress.total = 1000
    with caplog.at_level(logging.INFO, logger="p"):
        for _ in range(100):
            now[0] += 0.5  # 100 records over 50 s
            progress.advance()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 5  # at 10, 20, 30, 40, 50 s
    assert lines[0] == "Progress redivis_rows__t: 20 records of 1000 (2%), ETA 0:08:10, 2 records/s"
    assert "100 records of 1000 (10%)" in lines[-1]


def test_progress_without_total_reports_counts_only() -> None:
    now = [0.0]
    progress = Progress("x", logging.getLogger("p"), clock=lambda: now[0])
    progress.advance(30)
    now[0] = 3.0
    assert progress.line() == "Progress x: 30 records, 10 records/s"
