"""Every RECORD checked against its stream's SCHEMA: a sync against the sandbox, each
record validated with JSON Schema Draft 7 (``format`` checked for ``date-time``), and the
warnings that say a record carried properties its schema does not declare."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft7Validator, FormatChecker

from tests.helpers import make_tap

#: What the SDK (and the tap's lean conformance) say when a record had a property its
#: schema does not declare, and dropped it.
UNMAPPED_WARNINGS = ("not found in catalog schema", "not found in the schema")
#: A failure shows at most this many problems.
SHOWN = 20


def date_time_checker() -> FormatChecker:
    """Draft 7's checks of ``date-time`` and ``date``, which must really check (``date-time``
    needs ``rfc3339-validator``; without it every string would pass). ``time`` is left out:
    the SDK's time columns are local times of day (``14:30:00``), which Draft 7's ``time``
    (an RFC 3339 full-time, offset required) does not describe."""
    checker = FormatChecker(formats=("date-time", "date"))
    probe = Draft7Validator({"type": "string", "format": "date-time"}, format_checker=checker)
    if probe.is_valid("2024-05-01 10:00") or not probe.is_valid("2024-05-01T10:00:00Z"):
        raise AssertionError("date-time format is not checked: install rfc3339-validator")
    return checker


@dataclass
class CheckedSync:
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)
    records: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: Problems like one already listed (same stream, place and kind), not listed again.
    repeated: int = 0

    def assert_clean(self) -> None:
        found = [*self.problems, *(f"warning: {w}" for w in self.warnings)]
        assert not found, (
            f"{len(found)} kind(s) of problem (and {self.repeated} more like them):\n"
            + "\n".join(found[:SHOWN])
        )


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if any(text in message for text in UNMAPPED_WARNINGS):
            self.messages.append(message)


def checked_sync(config: dict[str, Any]) -> CheckedSync:
    """Run a whole sync of ``config`` and check every RECORD against the latest SCHEMA of
    its stream (a record before any SCHEMA of its stream is a problem too)."""
    checker = date_time_checker()
    tap = make_tap(config)
    handler = _Warnings()
    # Every logger the tap and the SDK use, whether it propagates or not.
    loggers = [logging.getLogger(), *logging.root.manager.loggerDict.values()]
    attached = [lg for lg in loggers if isinstance(lg, logging.Logger)]
    for lg in attached:
        lg.addHandler(handler)
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            tap.preflight()
            tap.sync_all()
        tap.finish()
    finally:
        for lg in attached:
            lg.removeHandler(handler)
    out = CheckedSync(warnings=sorted(set(handler.messages)))
    validators: dict[str, Draft7Validator] = {}
    # One problem shown per stream, place and kind; the rest counted.
    kinds: Counter[tuple[str, str, str]] = Counter()
    for line in buffer.getvalue().splitlines():
        message = json.loads(line)
        stream = message.get("stream")
        if message["type"] == "SCHEMA":
            Draft7Validator.check_schema(message["schema"])
            out.schemas[stream] = message["schema"]
            validators[stream] = Draft7Validator(message["schema"], format_checker=checker)
        elif message["type"] == "RECORD":
            out.counts[stream] += 1
            out.records[stream].append(message["record"])
            validator = validators.get(stream)
            if validator is None:
                out.problems.append(f"{stream}: RECORD before its SCHEMA")
                continue
            for error in validator.iter_errors(message["record"]):
                where = "/".join(str(p) for p in error.absolute_path) or "(record)"
                kinds[(stream, re.sub(r"/\d+", "/*", where), str(error.validator))] += 1
                if kinds[(stream, re.sub(r"/\d+", "/*", where), str(error.validator))] == 1:
                    out.problems.append(f"{stream}: {where}: {error.message[:160]}")
    out.repeated = sum(kinds.values()) - len(kinds)
    return out


def closed_objects(schema: dict[str, Any], path: str = "") -> list[str]:
    """Where ``schema`` has an object schema that is not open to undeclared fields."""
    found: list[str] = []
    types = schema.get("type")
    kinds = {types} if isinstance(types, str) else set(types or ())
    if ("object" in kinds or "properties" in schema) and schema.get(
        "additionalProperties"
    ) is not True:
        found.append(path or "(record)")
    for name, sub in (schema.get("properties") or {}).items():
        if isinstance(sub, dict):
            found += closed_objects(sub, f"{path}.{name}" if path else name)
    items = schema.get("items")
    if isinstance(items, dict):
        found += closed_objects(items, f"{path}[]")
    for key in ("anyOf", "oneOf", "allOf"):
        for option in schema.get(key) or ():
            if isinstance(option, dict):
                found += closed_objects(option, path)
    return found
