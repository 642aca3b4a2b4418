"""Large JSON bodies parsed as they arrive, with one incremental parser (ijson, C backend).

Some answers hold a whole data set in one body: Dexi's execution results (``{"headers":
[...], "rows": [[...], ...], "totalRows": n}``) and InVision's tables (a bare array of row
objects). :func:`iter_body` reads such a body chunk by chunk and hands out the items of
its one large array as they complete, so memory stays at a chunk plus the items of one
chunk, whatever the body's size.

Each chunk is pushed into yajl's C parser, which builds the items itself; a few small
members (``headers``, ``totalRows``) are picked up by a second parser each, dropped as soon
as it has found its member. Bytes are never decoded to text by hand, so a chunk boundary
inside a multi-byte UTF-8 character is nothing special, and a body that stops inside one
is simply a body that stopped early.

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

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import ijson

#: Event kinds yielded by iter_body.
MEMBER = "member"  # (MEMBER, name, value): a whole member of the top-level object
ITEM = "item"  # (ITEM, name, value): one item of the streamed array ("" for a bare array)

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
) -> Iterator[tuple[str, str, Any]]:
    """Events of one JSON body, chunk by chunk (within a chunk, members first).

    With ``streamed`` None the body must be an array and each item comes as
    ``(ITEM, "", item)``. Otherwise it must be an object: the items of its array member
    ``streamed`` come one by one, and each member named in ``members`` comes whole as
    ``(MEMBER, name, value)`` once it has been read; members named in ``hints`` come the
    same way if they are within the body's first ``HINT_BYTES`` (a count before the array,
    say; looking for one at the end would parse the whole body twice). If ``required`` is
    given, an object
    holding none of those members is the wrong shape. ``where`` ("Dexi: GET
    executions/x/result") starts every error message.
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

    def drain() -> Iterator[tuple[str, str, Any]]:
        nonlocal count
        # Members first: within one chunk their order against the items is not known,
        # and the headers usually lead.
        for name, _, sink in [*parsers[1:], parsers[0]]:
            if not sink:
                continue
            if name is None:
                count += len(sink)
                for item in sink:
                    yield ITEM, streamed or "", item
            else:
                seen.add(name)
                yield MEMBER, name, sink[0]
            del sink[:]
        # a member's parser has done its work once the member was read, a hint's also
        # once the body's first bytes are behind
        parsers[1:] = [
            p for p in parsers[1:] if p[0] not in seen and (fed < HINT_BYTES or p[0] not in hints)
        ]

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
        try:
            for _, parser, _ in parsers:
                parser.send(chunk)
        except _PARSE_ERRORS as exc:
            raise BrokenBody(f"{where}: the body is not valid JSON ({_reason(exc)})") from None
        yield from drain()
    if not started:
        _wrong_start(where, expected, head)
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
