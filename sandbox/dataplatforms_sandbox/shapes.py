"""Fields no client or spec declares, on every object the emulated APIs answer with.

Real platforms add fields to their answers without notice; a tap must pass them on rather
than drop them. ``with_unknown_fields`` adds two to every object of a resource (nested ones,
and objects inside lists, too): a scalar and an object. On by default; ``UNKNOWN_FIELDS``
turns it off for a sandbox that should answer only with the documented fields.
"""

from __future__ import annotations

from typing import Any

#: Whether resources carry the undeclared fields (the default sandbox: yes).
UNKNOWN_FIELDS = True
#: The names: plausible additions, and unlike any field a platform documents.
SCALAR_FIELD = "x_feature_tier"
OBJECT_FIELD = "x_feature_flags"


def with_unknown_fields(value: Any, *, skip: frozenset[str] = frozenset()) -> Any:
    """A copy of ``value`` with the undeclared fields added to each object in it (the
    model's own objects stay as they are: handlers serve them from several threads).
    Members named in ``skip`` are copied as they are (maps whose keys are data, such as a
    row of a table)."""
    if not UNKNOWN_FIELDS:
        return value
    if isinstance(value, dict):
        out = {
            name: member if name in skip else with_unknown_fields(member, skip=skip)
            for name, member in value.items()
        }
        out.setdefault(SCALAR_FIELD, 2)
        out.setdefault(OBJECT_FIELD, {"beta": True, "rollout": "2025-11"})
        return out
    if isinstance(value, list):
        return [with_unknown_fields(item, skip=skip) for item in value]
    return value
