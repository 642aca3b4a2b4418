"""Table versions: the target ends each run holding exactly what the source has.

A full-table stream re-reads its whole source each run. Every RECORD of such a stream
carries one version (the run's start in milliseconds), and one ``ACTIVATE_VERSION``
follows after *all* of the stream's partitions in this process (per run, execution,
dataset, workspace, ...): a target then drops, or marks deleted, the rows of older
versions. The SDK's own switch emits the message at the start of every partition; with a
version per stream that deletes nothing of a sibling partition, but it would empty the
table before the new copy arrives. Here it comes last, and only for a stream whose every
partition was read: a run that missed a partition must not delete that partition's rows.
A failure names the streams it left incomplete (``Runtime.record_failure``); their child
streams are incomplete with them (a missed parent is a missed partition of each child),
and a failure that names none holds back every stream. A platform that failed its
connection check has no selected stream left. Every other stream is activated.

Incremental streams carry no version: they add and update, as before.

``emit_activate_version_messages`` (the SDK's standard setting) decides; unset, it is on
without ``partition`` and off with it, because each of n partitioned processes holds a
slice of every table and its version would delete the other slices in a shared table.
Set it ``true`` when every partition loads into a schema of its own (as ``meltano.yml``'s
partitioned extractors do): each schema then mirrors that partition's slice.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from singer_sdk import typing as th
from singer_sdk.mapper import RemoveRecordTransform

SETTING = "emit_activate_version_messages"

PROPERTY = th.Property(
    SETTING,
    th.BooleanType,
    description=(
        "Mirror full-table streams: a table version on each of their records and one "
        "ACTIVATE_VERSION after all of a stream's partitions, so the target drops (or "
        "soft-deletes) rows the source no longer has. Default: on, off under `partition` "
        "(set it true when each partition loads into a schema of its own)."
    ),
)

FULL_TABLE = "FULL_TABLE"


def new_version() -> int:
    """A version above any earlier run's: the time in milliseconds."""
    return time.time_ns() // 1_000_000


#: A column the SQL targets' soft delete cannot live with: target-postgres (0.8.1, the
#: newest) binds its ACTIVATE_VERSION update's version as a parameter named ``version``,
#: which SQLAlchemy refuses in a table that has a column of that name, and the load fails
#: (its hard delete binds no such name and works). The SDK's own SQL sink, which most
#: SDK targets use, sends the update as text and is not affected.
RESERVED_COLUMN = "version"


def outgoing_schemas(stream: Any) -> list[dict[str, Any]]:
    """The schemas the stream's records leave the tap with: after its stream maps (a
    renamed or removed property, an alias), or its own without any."""
    maps = [m for m in stream.stream_maps if not isinstance(m, RemoveRecordTransform)]
    return [m.transformed_schema for m in maps] if maps else [stream.schema]


def reaches_target_as_version(stream: Any) -> bool:
    """Whether a top-level ``version`` property leaves the tap (``RESERVED_COLUMN``).
    ``dexi_runs`` has one (the robot's version): renamed by a stream map (e.g.
    ``{"dexi_runs": {"robot_version": "version", "version": "__NULL__"}}``) it no longer
    does, and the stream is mirrored."""
    return any(RESERVED_COLUMN in (s.get("properties") or {}) for s in outgoing_schemas(stream))


def mirrored_streams(streams: Iterable[Any]) -> list[Any]:
    """The selected streams that read their whole source each run: full-table, with no
    incremental ancestor (Dexi results and files are read for new executions only), not
    marked ``MIRRORED = False`` (a record per run the tap itself started), and whose
    records do not leave the tap with a top-level ``version`` property
    (``reaches_target_as_version``; such a stream is keyed and upserted as before)."""
    streams = list(streams)
    parent_of = {id(child): stream for stream in streams for child in stream.child_streams}

    def whole(stream: Any) -> bool:
        while stream is not None:
            if stream.replication_method != FULL_TABLE or not getattr(stream, "MIRRORED", True):
                return False
            stream = parent_of.get(id(stream))
        return True

    return [
        stream
        for stream in streams
        if stream.selected and whole(stream) and not reaches_target_as_version(stream)
    ]


def split_complete(
    mirrored: Iterable[Any], failures: Iterable[Any], streams: Iterable[Any]
) -> tuple[list[Any], list[Any]]:
    """``mirrored`` split into (streams every partition of which was read, streams a
    failure left incomplete). ``failures``: ``Runtime.failures``; ``streams``: every
    stream of the tap (to find the children of a failed stream)."""
    mirrored = list(mirrored)
    incomplete: set[str] = set()
    by_name = {stream.name: stream for stream in streams}
    for failure in failures:
        if failure.streams is None:
            return [], mirrored
        pending = list(failure.streams)
        while pending:
            name = pending.pop()
            if name in incomplete:
                continue
            incomplete.add(name)
            stream = by_name.get(name)
            if stream is not None:
                pending += [child.name for child in stream.child_streams]
    return (
        [s for s in mirrored if s.name not in incomplete],
        [s for s in mirrored if s.name in incomplete],
    )


def begin(streams: Iterable[Any], version: int) -> None:
    """Put ``version`` on every record of these streams, in every partition."""
    for stream in streams:
        stream.stream_version = version


def activate(streams: Iterable[Any], version: int) -> None:
    """One ACTIVATE_VERSION per stream, after all its partitions; a SCHEMA first for a
    stream that wrote none (no parent, no record), so its table is emptied too."""
    for stream in streams:
        stream.write_schema_message()  # announced once per stream: no repeat
        stream.write_activate_version_message(version)
