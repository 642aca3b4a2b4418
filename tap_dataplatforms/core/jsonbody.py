"""Large JSON bodies parsed as they arrive, with one incremental parser (ijson, C backend).

Some answers hold a whole data set in one body: Dexi's execution results (``{"headers":
[...], "rows": [[...], ...], "totalRows": n}``) and InVision's tables (a bare array of row
objects). :func:`iter_body` reads such a body chunk by chunk and hands out the items of
its one large array as they complete, so memory stays at a chunk plus the items of one
chunk, whatever the body's size.

Each chunk is pushed into yajl's C parser, which builds the items itself; a few small
members (``headers``, ``totalRows``) are picked up by a second parser each, dropped as soon
as it has found its member. The items of an object's streamed array that are arrays or
objects (Dexi's rows) are mostly decoded by msgspec instead, a run of whole items per
chunk, about three times quicker; yajl still sees the rest of the body, with one item
standing in for each run, so structure and errors are checked as before (``_RowCutter``).
Bytes are never decoded to text by hand, so a chunk boundary inside a multi-byte UTF-8
character is nothing special, and a body that stops inside one is simply a body that
stopped early.

Two failures, kept apart because their remedies differ:

- :class:`BrokenBody`: the bytes are not one whole JSON value (cut off, or not JSON where
  JSON began). The caller reads the body again, as after a dropped connection.
- :class:`WrongShape`: a whole, well-formed answer that is not the documented shape (a
  bare list where an object is documented, an object without the documented members).
  Reading it again would not change it: the partition fails, naming the platform, the
  endpoint and what was found.

A body that is no JSON at all (an HTML page with status 200, an empty body) is broken:
read again, and if it stays so the partition fails with the same kind of message.

``NaN`` and ``Infinity`` are not JSON; a body holding them is broken like any other, as is
one with an integer beyond 64 bits or a float beyond double range (yajl's limits).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import ijson
import msgspec

#: Event kinds yielded by iter_body.
MEMBER = "member"  # (MEMBER, name, value): a whole member of the top-level object
ITEM = "item"  # (ITEM, name, value): one item of the streamed array ("" for a bare array)
#: (RUN, name, items): several items of the streamed array in a row, in a list (only when
#: asked for: ``iter_body(runs=True)``)
RUN = "run"

#: Off: yajl parses every byte of every body (for comparisons).
QUICK_ROWS = True
#: How far into a body ``hints`` are looked for.
HINT_BYTES = 1 << 20
_BOM = b"\xef\xbb\xbf"
_BLANK = b" \t\r\n"
_PARSE_ERRORS = (ijson.JSONError, UnicodeDecodeError)
if ijson.backend != "yajl2_c":  # pragma: no cover - the wheels ship the C backend
    import warnings

    warnings.warn(
        f"ijson uses its {ijson.backend} backend: large bodies will parse slowly",
        RuntimeWarning,
        stacklevel=1,
    )


class BodyError(ValueError):
    """A JSON body that cannot be delivered; the message names where it came from."""


class BrokenBody(BodyError):
    """The body is not one whole JSON value: cut off, or malformed. Read it again."""


class WrongShape(BodyError):
    """A complete answer that is not the documented shape. Reading it again will not help."""


def describe_start(head: bytes) -> str:
    """What a body that should have been JSON of another kind turned out to be."""
    text = head.lstrip(_BLANK)
    if not text:
        return "an empty body"
    first = text[:1]
    if first == b"[":
        return "a JSON array"
    if first == b"{":
        return "a JSON object"
    if first == b"<":
        lowered = text[:200].lower()
        if b"<html" in lowered or b"<!doctype html" in lowered:
            return "an HTML page"
        return "an XML or HTML document"
    if first == b'"':
        return "a JSON string"
    if first in b"-0123456789":
        return "a JSON number"
    if text.startswith((b"true", b"false")):
        return "a JSON boolean"
    if text.startswith(b"null"):
        return "JSON null"
    return "text that is not JSON"


def iter_body(
    chunks: Iterable[bytes],
    *,
    where: str,
    streamed: str | None = None,
    members: Sequence[str] = (),
    hints: Sequence[str] = (),
    required: Sequence[str] = (),
    runs: bool = False,
) -> Iterator[tuple[str, str, Any]]:
    """Events of one JSON body, chunk by chunk (within a chunk, members first).

    With ``streamed`` None the body must be an array and each item comes as
    ``(ITEM, "", item)``. Otherwise it must be an object: the items of its array member
    ``streamed`` come one by one, and each member named in ``members`` comes whole as
    ``(MEMBER, name, value)`` once it has been read; members named in ``hints`` come the
    same way if they are within the body's first ``HINT_BYTES`` (a count before the array,
    say; looking for one at the end would parse the whole body twice). If ``required`` is
    given, an object holding none of those members is the wrong shape. ``where`` ("Dexi:
    GET executions/x/result") starts every error message.

    The items of a streamed member that are arrays or objects (Dexi's rows) take a quicker
    path, see ``_RowCutter``: whole runs of them are decoded by msgspec, and yajl parses
    the rest of the body with each run in place of one item (then dropped), so the
    structure, the errors and the events are yajl's, as for any other body. With ``runs``
    such a run comes as one ``(RUN, name, items)`` event instead of an event per item (for
    a caller that handles rows a list at a time); the items are the same, in order.
    """
    want = b"{" if streamed is not None else b"["
    expected = "a JSON object" if streamed is not None else "a JSON array"
    items: list[Any] = ijson.sendable_list()
    item_prefix = "item" if streamed is None else f"{streamed}.item"
    parsers: list[tuple[str | None, Any, list[Any]]] = [
        (None, ijson.items_coro(items, item_prefix, use_float=True), items)
    ]
    for name in (*members, *hints):
        found: list[Any] = ijson.sendable_list()
        parsers.append((name, ijson.items_coro(found, name, use_float=True), found))
    fed = 0
    seen: set[str] = set()
    head = b""  # the body's first bytes, until its first significant one has come
    started = False
    count = 0
    drop = 0  # items yajl gives that stand in for items already handed out
    cutter = _RowCutter(streamed) if streamed is not None and QUICK_ROWS else None

    def drain() -> Iterator[tuple[str, str, Any]]:
        nonlocal count, drop
        # Members first: within one chunk their order against the items is not known,
        # and the headers usually lead.
        for name, _, sink in [*parsers[1:], parsers[0]]:
            if not sink:
                continue
            if name is None:
                if drop:
                    del sink[:drop]
                    drop = 0
                count += len(sink)
                for item in sink:
                    yield ITEM, streamed or "", item
            else:
                seen.add(name)
                yield MEMBER, name, sink[0]
            del sink[:]
        prune()

    def prune() -> None:
        # a member's parser has done its work once the member was read, a hint's also
        # once the body's first bytes are behind
        parsers[1:] = [
            p for p in parsers[1:] if p[0] not in seen and (fed < HINT_BYTES or p[0] not in hints)
        ]

    def send(data: bytes) -> None:
        try:
            for _, parser, _ in parsers:
                parser.send(data)
        except _PARSE_ERRORS as exc:
            raise BrokenBody(f"{where}: the body is not valid JSON ({_reason(exc)})") from None

    stream = iter(chunks)
    for chunk in stream:
        if not chunk:
            continue
        if not started:
            head += chunk
            if head.startswith(_BOM):
                head = head[len(_BOM) :]
            elif len(head) < len(_BOM) and _BOM.startswith(head):
                continue  # perhaps a byte order mark still arriving
            significant = head.lstrip(_BLANK)
            if not significant:
                continue
            if significant[:1] != want:
                for more in stream:  # enough of it to say what it is
                    head += more
                    if len(head) >= 256:
                        break
                _wrong_start(where, expected, head)
            started, chunk = True, head
        fed += len(chunk)
        if cutter is None:
            send(chunk)
            yield from drain()
            continue
        for part in cutter.feed(chunk):
            if isinstance(part, list):  # items msgspec decoded
                count += len(part)
                if runs:
                    yield RUN, streamed or "", part
                    continue
                for item in part:
                    yield ITEM, streamed or "", item
            else:  # bytes for yajl, and whether they start with a stand-in item
                data, stand_in = part
                drop += stand_in
                send(data)
                yield from drain()
        prune()
        if cutter.done:
            cutter = None
    if not started:
        _wrong_start(where, expected, head)
    if cutter is not None:
        rest, stand_in = cutter.rest()
        if rest:
            drop += stand_in
            send(rest)
            yield from drain()
    try:
        for _, parser, _ in parsers:
            parser.close()
    except _PARSE_ERRORS as exc:
        raise BrokenBody(
            f"{where}: the body ended before its JSON did ({_reason(exc)}, after {count} items)"
        ) from None
    yield from drain()
    if required and count == 0 and not seen & set(required):
        raise WrongShape(
            f"{where}: expected an object with {_names(required)}, found an object with none"
        )


#: One JSON token after optional blanks: a whole string, a bracket, a colon or comma, or
#: the bytes of a number or literal.
_TOKEN = re.compile(rb'[ \t\r\n]*(?:("(?:[^"\\]|\\.)*")|([\[\]{}:,])|([^ \t\r\n\[\]{}:,"]+))', re.S)
#: The bytes before the streamed array looked through for its start, at most.
HEAD_LIMIT = 1 << 20
#: A run of items longer than this without a place to cut: yajl parses the rest.
RUN_LIMIT = 1 << 23
_ENDS = frozenset(b"]}")
_BLANKS = frozenset(_BLANK)
_DECODE = msgspec.json.Decoder().decode


class _RowCutter:
    """Takes whole runs of a streamed member's items out of a body for msgspec to decode.

    The body's bytes come in as they arrive (``feed``); what yajl must still parse goes
    back out, verbatim, in order with the runs of items decoded here. Up to the streamed
    member's ``[`` everything is passed on while a light scan (``_TOKEN``) follows the
    object's top level to that ``[``. From there, the bytes up to the last comma that
    follows a ``]`` or ``}`` are decoded by msgspec as one array; if that array is whole
    and not empty, its items are handed out, and yajl later sees one stand-in item (``0``)
    in their place, so that it still checks the body's structure around them: a run of
    whole items in place of one item changes neither whether the body is JSON nor
    anything else in it. A run holding an integer beyond 64 bits (which yajl refuses and
    msgspec does not) goes to yajl as it is. Where msgspec refuses a run (a cut inside a
    string, no JSON, NaN) or finds no place to cut, everything from there on goes to
    yajl, as for any body.
    """

    def __init__(self, streamed: str) -> None:
        self.key = streamed
        self.buffer = b""
        self.scanned = 0  # where the scan of the head goes on
        self.depth = 0
        self.expect_key = False
        self.last_key: str | None = None
        self.after_colon = False
        self.in_array = False  # the scan found the streamed array's start
        self.lead = 0  # 1 once the buffer starts with the comma of a cut
        self.stand_in = b""  # what yajl sees next in place of the runs cut since
        self.done = False  # everything from here on is yajl's

    def _out(self, data: bytes) -> tuple[bytes, int]:
        """Bytes for yajl, after the stand-in for any runs cut before them (and 1 if so:
        yajl's first item from them is to be dropped)."""
        stand_in, self.stand_in = self.stand_in, b""
        return stand_in + data, 1 if stand_in else 0

    def rest(self) -> tuple[bytes, int]:
        rest, self.buffer = self.buffer, b""
        self.done = True
        return self._out(rest) if rest else (rest, 0)

    def feed(self, chunk: bytes) -> list[tuple[bytes, int] | list[Any]]:
        """Bytes for yajl and runs of items, in body order, for one chunk of the body."""
        self.buffer += chunk
        parts: list[tuple[bytes, int] | list[Any]] = []
        if not self.in_array:
            start = self._scan_head()
            if start is None:
                if self.done or len(self.buffer) > HEAD_LIMIT:
                    parts.append(self.rest())
                return parts
            parts.append((self.buffer[:start], 0))
            self.buffer = self.buffer[start:]
            self.in_array = True
        while True:
            run = self._cut()
            if run is None:
                break
            parts.append(run)
        if self.done or len(self.buffer) > RUN_LIMIT:
            parts.append(self.rest())
        return parts

    def _scan_head(self) -> int | None:
        """Where the streamed array's items begin, once the scan reaches it."""
        buffer = self.buffer
        position = self.scanned
        while True:
            match = _TOKEN.match(buffer, position)
            if match is None or match.end() == len(buffer):
                self.scanned = position  # wait for more: the token may go on
                return None
            position = match.end()
            text, mark, _ = match.groups()
            if mark in (b"[", b"{"):
                opens_it = self.depth == 1 and mark == b"[" and self.after_colon
                if opens_it and self.last_key == self.key:
                    self.scanned = position
                    return position
                self.depth += 1
                self.expect_key = mark == b"{" and self.depth == 1
                self.after_colon = False
            elif mark in (b"]", b"}"):
                self.depth -= 1
                if self.depth <= 0:
                    self.done = True  # the object ended first: nothing to cut
                    return None
                self.after_colon = False
            elif mark == b",":
                self.expect_key = self.depth == 1
                self.after_colon = False
            elif mark == b":":
                self.after_colon = self.depth == 1
            elif text is not None and self.depth == 1 and self.expect_key:
                try:
                    self.last_key = _DECODE(text)
                except msgspec.MsgspecError:
                    self.done = True
                    return None
                self.expect_key = False
            else:
                self.after_colon = False

    def _cut(self) -> tuple[bytes, int] | list[Any] | None:
        """The next run: its items, or its bytes for yajl (an integer beyond 64 bits);
        ``None`` when there is none to take (``done`` if none ever will be)."""
        buffer = self.buffer
        end = len(buffer)
        for _ in range(2):  # the last place to cut may be just past the array's end
            comma = _last_cut(buffer, end)
            if comma <= self.lead:
                return None
            piece = buffer[self.lead : comma]
            try:
                items = _DECODE(b"[" + piece + b"]")
            except msgspec.MsgspecError:
                end = comma
                continue
            if not isinstance(items, list) or not items:
                break
            run: tuple[bytes, int] | list[Any] = items
            if _NINETEEN_DIGITS in piece.translate(_DIGIT_MASK) and _has_big_int(items):
                run = self._out(buffer[:comma])  # whole items: yajl ends between two
            else:
                self.stand_in = self.stand_in or (b",0" if self.lead else b"0")
            self.buffer = buffer[comma:]
            self.lead = 1
            return run
        self.done = True
        return None


#: Digits enough for an integer that may not fit in 64 bits, looked for in the bytes
#: with every digit made "0" and every other byte "." (quicker than a pattern).
_NINETEEN_DIGITS = b"0" * 19
_DIGIT_MASK = bytes(48 if 48 <= byte <= 57 else 46 for byte in range(256))


def _has_big_int(value: Any) -> bool:
    """Whether an integer beyond 64 bits is anywhere in ``value`` (yajl refuses those)."""
    if type(value) is int:
        return not -(1 << 63) <= value < (1 << 63)
    if isinstance(value, list):
        return any(_has_big_int(item) for item in value)
    if isinstance(value, dict):
        return any(_has_big_int(item) for item in value.values())
    return False


def _last_cut(buffer: bytes, end: int) -> int:
    """The last comma before ``end`` that follows a ``]`` or ``}`` (blanks between), or -1."""
    while True:
        comma = buffer.rfind(b",", 0, end)
        if comma <= 0:
            return -1
        before = comma - 1
        while before > 0 and buffer[before] in _BLANKS:
            before -= 1
        if buffer[before] in _ENDS:
            return comma
        end = comma


def _wrong_start(where: str, expected: str, head: bytes) -> None:
    """JSON of the other kind is the wrong shape; no JSON at all (an HTML page from a
    gateway, an empty body) is a broken answer, read again like a dropped one."""
    found = describe_start(head)
    error = WrongShape if head.lstrip(_BLANK)[:1] in (b"{", b"[") else BrokenBody
    raise error(f"{where}: expected {expected}, found {found}")


def iter_array(chunks: Iterable[bytes], *, where: str) -> Iterator[Any]:
    """The items of a body that must be a JSON array, one at a time."""
    for _, _, item in iter_body(chunks, where=where):
        yield item


def _names(names: Sequence[str]) -> str:
    quoted = [f"'{n}'" for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _reason(exc: BaseException) -> str:
    """yajl's message without the excerpt of the body it quotes."""
    if isinstance(exc, UnicodeDecodeError):
        return "invalid UTF-8"
    raw = exc.args[0] if exc.args else ""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    lines = text.strip().splitlines()
    return (lines[0].strip().rstrip(".") if lines else type(exc).__name__)[:120]
