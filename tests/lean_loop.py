"""What the tests of the lean record loop share: messages made comparable between two runs,
and a count of which loop each partition took (the ``loops`` fixture in conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tap_dataplatforms.core.records import LeanRecordLoop


def comparable(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages without what differs between any two runs (extraction time, signposts,
    the table version of full-table streams: the run's start)."""
    for message in messages:
        message.pop("time_extracted", None)
        message.pop("version", None)
        for stream in message.get("value", {}).get("bookmarks", {}).values():
            for partition in stream.get("partitions", []):
                partition.pop("replication_key_signpost", None)
    return messages


def count_loops(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts, from now on, which loop each partition takes: lean or the SDK's."""
    used = {"lean": 0, "sdk": 0}
    fits = LeanRecordLoop._lean_loop_fits

    def counted(self: Any, context: Any, write_messages: bool) -> bool:
        result = fits(self, context, write_messages)
        used["lean" if result else "sdk"] += 1
        return result

    monkeypatch.setattr(LeanRecordLoop, "_lean_loop_fits", counted)
    return used
