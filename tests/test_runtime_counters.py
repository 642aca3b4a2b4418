"""Runtime.count: platform counters any stream can add to, logged when the sync ends."""

from __future__ import annotations

import logging

import pytest

from tap_dataplatforms.core.runtime import Runtime
from tap_dataplatforms.core.settings import parse
from tap_dataplatforms.tap import PLATFORMS
from tests.helpers import make_tap


def test_count_adds_per_platform() -> None:
    runtime = Runtime(parse({"redivis": {"token": "t-123456"}}, PLATFORMS), PLATFORMS)
    runtime.count("redivis", "server_ms", 12)
    runtime.count("redivis", "server_ms", 30)
    runtime.count("redivis", "pages")
    assert runtime.counters["redivis.server_ms"] == 42
    assert runtime.counters["redivis.pages"] == 1


def test_counters_are_logged_at_the_end(caplog: pytest.LogCaptureFixture) -> None:
    tap = make_tap({"redivis": {"token": "t-123456"}})
    tap.runtime.count("redivis", "server_ms", 7)
    with caplog.at_level(logging.INFO):
        tap.finish()
    assert "'redivis.server_ms': 7" in caplog.text
