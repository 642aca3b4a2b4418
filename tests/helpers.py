"""Shared test helpers: a fake clock, a tap runner that captures Singer output."""

from __future__ import annotations

import contextlib
import io
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from tap_dataplatforms.core.budget import Clock
from tap_dataplatforms.core.runtime import Runtime
from tap_dataplatforms.tap import PLATFORMS, TapDataPlatforms


class FakeClock(Clock):
    """Time that moves only when someone sleeps."""

    def __init__(self, wall_start: float = 1_800_000_000.0) -> None:
        self.wall_start = wall_start
        self.now = 0.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.wall_start + self.now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.0)


@dataclass
class SyncOutput:
    records: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    states: list[dict[str, Any]] = field(default_factory=list)
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)


def make_tap(config: dict[str, Any], clock: Clock | None = None, **kwargs: Any) -> TapDataPlatforms:
    tap = TapDataPlatforms(config=config, parse_env_config=False, **kwargs)
    if clock is not None:
        tap.runtime = Runtime(tap.settings_object, PLATFORMS, clock=clock)
    return tap


def run_sync(tap: TapDataPlatforms, *, finish: bool = True) -> SyncOutput:
    """Run a whole sync as the command line would and collect what it wrote."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        tap.preflight()
        tap.sync_all()
    out = SyncOutput()
    for line in buffer.getvalue().splitlines():
        message = json.loads(line)
        if message["type"] == "RECORD":
            out.records[message["stream"]].append(message["record"])
        elif message["type"] == "STATE":
            out.states.append(message["value"])
        elif message["type"] == "SCHEMA":
            out.schemas[message["stream"]] = message["schema"]
    if finish:
        tap.finish()
    return out
