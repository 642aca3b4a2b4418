"""The command line's input files (config, catalog, state): read and shape-checked up front.

A file that is not JSON, not UTF-8, or not shaped as Singer says (a catalog from another
tool, a state whose bookmarks are not objects) fails before any request with one line
naming the file and the place, instead of a traceback from deep inside the SDK. Streams
the tap does not know, in a catalog or a state from another version, are ignored (the
catalog's with a warning); a catalog that lacks a stream the selected ones need is an
error, because the SDK cannot sync a child without its parent's entry.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from tap_dataplatforms.core.errors import ConfigError
from tap_dataplatforms.core.http import json_type


def parse_json(option: str, raw: str | bytes) -> Any:
    """The JSON in ``raw``, or a ConfigError naming ``option`` and where the text broke."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{option}: not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise ConfigError(f"{option}: the file is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{option}: not valid JSON ({exc.msg}; line {exc.lineno}, column {exc.colno})"
        ) from None


def _expect(option: str, where: str, value: Any, kind: type) -> None:
    if not isinstance(value, kind):
        expected = {"dict": "an object", "list": "an array", "str": "a string"}[kind.__name__]
        raise ConfigError(f"{option}: {where}: expected {expected}, got {json_type(value)}")


def check_state(state: Any) -> dict[str, Any]:
    """A Singer state: an object whose ``bookmarks`` are objects per stream."""
    _expect("--state", "the top level", state, dict)
    bookmarks = state.get("bookmarks", {})
    _expect("--state", "bookmarks", bookmarks, dict)
    for stream, entry in bookmarks.items():
        _expect("--state", f"bookmarks.{stream}", entry, dict)
        partitions = entry.get("partitions", [])
        _expect("--state", f"bookmarks.{stream}.partitions", partitions, list)
        for index, partition in enumerate(partitions):
            where = f"bookmarks.{stream}.partitions[{index}]"
            _expect("--state", where, partition, dict)
            _expect("--state", f"{where}.context", partition.get("context", {}), dict)
    return state


def check_catalog(catalog: Any) -> dict[str, Any]:
    """A Singer catalog: an object with a list of streams, each with an id, a schema
    object and a metadata list."""
    _expect("--catalog", "the top level", catalog, dict)
    streams = catalog.get("streams", [])
    _expect("--catalog", "streams", streams, list)
    for index, entry in enumerate(streams):
        where = f"streams[{index}]"
        _expect("--catalog", where, entry, dict)
        _expect("--catalog", f"{where}.tap_stream_id", entry.get("tap_stream_id"), str)
        _expect("--catalog", f"{where}.schema", entry.get("schema"), dict)
        _expect("--catalog", f"{where}.metadata", entry.get("metadata", []), list)
        for number, item in enumerate(entry.get("metadata", [])):
            _expect("--catalog", f"{where}.metadata[{number}]", item, dict)
    return catalog


def catalog_gaps(
    catalog: Mapping[str, Any], needed: Iterable[str], known: Iterable[str]
) -> tuple[list[str], list[str]]:
    """Streams that must run but have no catalog entry, and catalog entries for streams
    this version does not have."""
    ids = {entry["tap_stream_id"] for entry in catalog.get("streams", [])}
    known_set = set(known)
    missing = sorted(name for name in needed if name not in ids)
    unknown = sorted(ids - known_set)
    return missing, unknown
