"""SIGKILL the tap at seeded random points; resuming from its last STATE loses nothing.

For every platform: one uninterrupted run of ``tap-dataplatforms`` gives the complete set
of records; then, per kill, a run is read line by line and killed after a seeded number of
lines (what a target would have received), and a second run is started with the last STATE
line it got. Together they must hold the complete set, and a record of an incremental
stream read again must not lie below the bookmark that state gave for it: a re-read is
only the part that was in flight (after the bookmark, or a tie on it). Full-table streams
are read again whole by design (the state keeps no place in them).

CI kills twice per platform; ``TAPDP_NIGHTLY=1`` kills 20 times.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dataplatforms_sandbox import Sandbox
from tests.reliability import NIGHTLY, PLATFORM_NAMES, new_sandbox, record_key, report, tap_config

KILLS = 20 if NIGHTLY else 2
TAP = str(Path(sys.executable).parent / "tap-dataplatforms")


@dataclass
class Run:
    messages: list[dict[str, Any]] = field(default_factory=list)
    returncode: int | None = None
    stderr: str = ""

    def records(self) -> list[tuple[str, dict[str, Any]]]:
        return [(m["stream"], m["record"]) for m in self.messages if m["type"] == "RECORD"]

    def last_state(self) -> tuple[int, dict[str, Any] | None]:
        """Index of the last STATE message and its value."""
        for index in range(len(self.messages) - 1, -1, -1):
            if self.messages[index]["type"] == "STATE":
                return index, self.messages[index]["value"]
        return -1, None


def run_tap(config: Path, state: dict[str, Any] | None, work: Path, kill_after: int = 0) -> Run:
    """Run the tap; with ``kill_after``, SIGKILL it once that many lines have arrived."""
    args = [TAP, "--config", str(config)]
    if state is not None:
        path = work / "state.json"
        path.write_text(json.dumps(state))
        args += ["--state", str(path)]
    log = work / "stderr.log"
    with log.open("w") as errors:
        proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        run = Run()
        assert proc.stdout is not None
        for line in proc.stdout:
            run.messages.append(json.loads(line))
            if kill_after and len(run.messages) >= kill_after:
                # What a target got when the tap died here; a tap that had already
                # finished (its last lines still in the pipe) is killed in effect too.
                proc.send_signal(signal.SIGKILL)
                break
        proc.stdout.close()
        run.returncode = proc.wait(timeout=120)
    run.stderr = log.read_text()[-3000:]
    return run


@dataclass
class Streams:
    """What the SCHEMA messages say: keys, and the replication key of incremental ones."""

    keys: dict[str, list[str]] = field(default_factory=dict)
    replication: dict[str, str] = field(default_factory=dict)

    def learn(self, run: Run) -> None:
        for m in run.messages:
            if m["type"] == "SCHEMA":
                self.keys[m["stream"]] = list(m.get("key_properties") or [])
                bookmarks = m.get("bookmark_properties") or []
                if bookmarks:
                    self.replication[m["stream"]] = bookmarks[0]

    def key(self, stream: str, record: dict[str, Any]) -> str:
        return record_key(stream, record, self.keys.get(stream, []))


def bookmark_for(state: dict[str, Any], stream: str, record: dict[str, Any]) -> Any:
    """The bookmark ``state`` holds for the partition ``record`` belongs to, if any."""
    entry = (state.get("bookmarks") or {}).get(stream) or {}
    for partition in entry.get("partitions") or []:
        context = partition.get("context") or {}
        if context and all(record.get(k) == v for k, v in context.items()):
            return partition.get("replication_key_value")
    return entry.get("replication_key_value")


def before(value: Any, mark: Any) -> bool:
    """``value < mark``, as instants when both are timestamps (``Z`` or ``+00:00``)."""
    try:
        return dt.datetime.fromisoformat(str(value)) < dt.datetime.fromisoformat(str(mark))
    except ValueError:
        return bool(value < mark)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    sb = new_sandbox(seed=3)
    yield sb
    sb.stop()


@pytest.mark.parametrize("platform", PLATFORM_NAMES)
def test_killed_syncs_resume_without_loss(sandbox: Sandbox, platform: str, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(tap_config(sandbox, platform, tmp_path)))
    complete = run_tap(config, None, tmp_path)
    assert complete.returncode == 0, complete.stderr
    streams = Streams()
    streams.learn(complete)
    want = {streams.key(s, r) for s, r in complete.records()}
    assert len(want) > 10
    rng = random.Random(f"crash:{platform}")
    figures: Counter[str] = Counter()
    for _ in range(KILLS):
        point = rng.randrange(1, len(complete.messages))
        first = run_tap(config, None, tmp_path, kill_after=point)
        assert first.returncode in (-signal.SIGKILL, 0), first.stderr
        assert len(first.messages) == point
        cut, state = first.last_state()
        second = run_tap(config, state, tmp_path)
        assert second.returncode == 0, second.stderr
        streams.learn(second)
        got = {streams.key(s, r) for s, r in first.records() + second.records()}
        lost = len(want - got)
        assert got == want, f"killed after {point} lines: lost {lost}\n{second.stderr}"
        seen_before = Counter(streams.key(s, r) for s, r in first.records())
        for stream, record in second.records():
            if not seen_before[streams.key(stream, record)]:
                continue
            figures["duplicates"] += 1
            rkey = streams.replication.get(stream)
            if rkey is None:
                figures["duplicates_full_table"] += 1
                continue
            mark = bookmark_for(state or {}, stream, record)
            value = record.get(rkey)
            below = mark is not None and value is not None and before(value, mark)
            assert not below, f"{stream}: {value} re-read below its bookmark {mark}"
            figures["duplicates_in_flight"] += 1
        figures["resumed"] += 1
        figures["records_emitted_before_kill"] += len(first.records())
        figures["records_after_last_state"] += sum(
            m["type"] == "RECORD" for m in first.messages[cut + 1 :]
        )
    report(
        "crash-resume",
        platform=platform,
        kills=KILLS,
        records=len(want),
        records_lost=0,
        **dict(sorted(figures.items())),
    )
