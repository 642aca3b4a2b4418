"""The ``partition`` setting: which parents this process extracts of ``count``.

A parent is assigned by a hash of its stable identifier, never by its position in a
list, so every process computes the same split without talking to the others, and a
parent keeps its partition when others come and go. The identifier is the platform's id
wherever it has one (Dexi run and dataset ids, Re:infer source and dataset ids, Redivis
dataset ids, InVision data flow ids, Datalinx workspace ids), so that renaming a parent
does not move it. A configured name is used only where it is the platform's sole
identity, an InVision table (its JSON Data API addresses tables by name and lists no
ids), and for a configured Redivis table reference, which is split before any request so
that a process asks only about its own tables.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tap_dataplatforms.core.settings import Partition


def partition_of(key: str, count: int) -> int:
    """The partition (0 to ``count`` - 1) that owns the parent ``key``."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def in_partition(partition: Partition | None, key: str) -> bool:
    """Whether the parent ``key`` is this process's share (always, without a partition)."""
    return partition is None or partition_of(key, partition.count) == partition.index


def first_partition(partition: Partition | None) -> bool:
    """Whether this process reads what has no parent to split by (partition 0 does)."""
    return partition is None or partition.index == 0
