"""The run summary: one row per stream at the end of every sync, for the operator.

Records, requests, retries, 429s, seconds spent waiting for the request budget, the
bookmark before -> after and the partitions that failed, as a table in the log and, with
``run_summary_path``, as a JSON file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tap_dataplatforms.core.redact import redact
from tap_dataplatforms.core.runtime import Runtime

COLUMNS = (
    ("stream", "stream"),
    ("records", "records"),
    ("requests", "requests"),
    ("retries", "retries"),
    ("http_429", "429s"),
    ("budget_wait_seconds", "wait s"),
    ("bookmark", "bookmark before -> after"),
    ("partitions_failed", "failed"),
)


def _values(stream_state: Any) -> list[str]:
    if not isinstance(stream_state, Mapping):
        return []
    found = []
    value = stream_state.get("replication_key_value")
    if value is not None:
        found.append(str(value))
    for partition in stream_state.get("partitions") or []:
        found.extend(_values(partition))
    return found


def bookmark_text(stream_state: Any) -> str:
    """One stream's bookmark in a few characters: its value, or the newest of its
    partitions' with how many there are; ``-`` when it has none."""
    values = _values(stream_state)
    if not values:
        return "-"
    if len(values) == 1:
        return values[0]
    return f"{max(values)} ({len(values)} partitions)"


def _bookmark(state: Mapping[str, Any] | None, stream: str) -> Any:
    bookmarks = (state or {}).get("bookmarks")
    return bookmarks.get(stream) if isinstance(bookmarks, Mapping) else None


def failed_partitions(runtime: Runtime, stream: str) -> int:
    """The failures that name ``stream`` among the streams they left incomplete."""
    return sum(1 for f in runtime.failures if stream in (f.streams or ()))


def summary_rows(
    streams: Iterable[str],
    runtime: Runtime,
    records: Mapping[str, int],
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
) -> list[dict[str, Any]]:
    rows = []
    for name in streams:
        counters: Mapping[str, float] = runtime.stream_counters.get(name, {})
        rows.append(
            {
                "stream": name,
                "records": int(records.get(name, 0)),
                "requests": int(counters.get("requests", 0)),
                "retries": int(counters.get("retries", 0)),
                "http_429": int(counters.get("http_429", 0)),
                "budget_wait_seconds": round(float(counters.get("budget_wait_seconds", 0)), 1),
                "bookmark_before": bookmark_text(_bookmark(before, name)),
                "bookmark_after": bookmark_text(_bookmark(after, name)),
                "partitions_failed": failed_partitions(runtime, name),
            }
        )
    return rows


def table_lines(rows: list[dict[str, Any]]) -> list[str]:
    cells = [[title for _, title in COLUMNS]]
    for row in rows:
        bookmark = row["bookmark_before"]
        if row["bookmark_after"] != bookmark:
            bookmark += f" -> {row['bookmark_after']}"
        line = [str(row[key]) if key != "bookmark" else bookmark for key, _ in COLUMNS]
        cells.append(line)
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]

    def render(line: list[str]) -> str:
        parts = [
            cell.ljust(width) if i in (0, 6) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return [render(cells[0]), *(render(line) for line in cells[1:])]


def write_json(path: str, rows: list[dict[str, Any]], runtime: Runtime) -> None:
    document = {
        "exit_code": runtime.exit_code(),
        "streams": rows,
        # The log's redaction covers log lines only: this file gets its own.
        "failures": [
            {"partition": f.partition, "message": redact(f.message)} for f in runtime.failures
        ],
        "skipped": [
            {"partition": f.partition, "message": redact(f.message)} for f in runtime.skipped
        ],
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
