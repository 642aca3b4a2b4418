"""Incremental parsing of one large JSON object whose bulk is one array member.

Some APIs answer a whole data set in one body (Dexi's execution results: ``{"headers":
[...], "rows": [[...], ...], "totalRows": n}``). Parsing such a body at once holds the
bytes and every parsed row in memory together; here the body is read in chunks and the
array's items come out one at a time, so memory stays at a chunk plus one item whatever
the body's size. Each item is decoded by the standard library's C scanner
(``JSONDecoder.raw_decode``), so the per-item cost stays close to ``json.loads``.

``NaN`` and ``Infinity`` (accepted by Python's parser, not valid JSON) become ``None``.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterable, Iterator
from typing import Any, cast

import msgspec

_WHITESPACE = " \t\n\r"
#: Consumed text is dropped from the buffer once this much has piled up.
_COMPACT_AT = 1 << 20
#: Items are decoded in one call when at least this much text holds whole ones.
_BATCH_MIN_CHARS = 4096
_BATCH_DECODE = msgspec.json.Decoder(list).decode


class JsonStreamError(ValueError):
    """The body is not the expected JSON object (or it ended early)."""


def _no_constants(_: str) -> None:
    return None


_DECODER = json.JSONDecoder(parse_constant=_no_constants)

# Event kinds yielded by iter_members.
MEMBER = "member"  # (MEMBER, name, value): a whole member other than the streamed one
ITEM = "item"  # (ITEM, name, value): one item of the streamed array member


class _Buffer:
    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self.text = ""
        self.pos = 0
        self.eof = False

    def more(self) -> bool:
        """Append the next chunk; False at the end of the body."""
        while not self.eof:
            chunk = next(self._chunks, None)
            if chunk is None:
                self.eof = True
                tail = self._utf8.decode(b"", final=True)
                if tail:
                    self.text += tail
                    return True
                return False
            piece = self._utf8.decode(chunk)
            if piece:
                if self.pos >= _COMPACT_AT:
                    self.text, self.pos = self.text[self.pos :], 0
                self.text += piece
                return True
        return False

    def peek(self) -> str:
        """The next non-blank character (not consumed); '' at the end."""
        while True:
            text, pos = self.text, self.pos
            while pos < len(text) and text[pos] in _WHITESPACE:
                pos += 1
            self.pos = pos
            if pos < len(text):
                return text[pos]
            if not self.more():
                return ""

    def expect(self, char: str) -> None:
        found = self.peek()
        if found != char:
            raise JsonStreamError(f"expected {char!r} at offset {self.pos}, found {found!r}")
        self.pos += 1

    def batch(self) -> list[Any] | None:
        """Several whole array items at once, when the buffer holds many compact ones.

        The buffer is cut after the last ``],[`` and the items before it are decoded in
        one call. A cut that falls inside a string leaves that string open, so the
        decode fails and the items are read one by one instead; so does anything msgspec
        refuses (NaN), which the one-by-one path reads as Python does.
        """
        text, start = self.text, self.pos
        cut = text.rfind("],[", start)
        if cut - start < _BATCH_MIN_CHARS:
            return None
        try:
            items = _BATCH_DECODE("[" + text[start : cut + 1] + "]")
        except msgspec.MsgspecError:
            return None
        self.pos = cut + 1
        return cast("list[Any]", items)

    def value(self) -> Any:
        """Decode the next JSON value, reading more of the body until it is complete."""
        if not self.peek():
            raise JsonStreamError("the body ended before a value")
        while True:
            try:
                value, end = _DECODER.raw_decode(self.text, self.pos)
            except json.JSONDecodeError as exc:
                if self.more():
                    continue
                raise JsonStreamError(f"invalid or truncated JSON: {exc}") from None
            # A number (or literal) that reaches the end of the buffer may continue in the
            # next chunk: read on before trusting it.
            if end == len(self.text) and not self.eof and self.more():
                continue
            self.pos = end
            return value


def iter_members(chunks: Iterable[bytes], streamed: str) -> Iterator[tuple[str, str, Any]]:
    """Events of the top-level object in ``chunks``: each member whole, except the array
    member named ``streamed``, whose items come one by one (in body order)."""
    buf = _Buffer(chunks)
    buf.expect("{")
    if buf.peek() == "}":
        buf.pos += 1
        return
    while True:
        name = buf.value()
        if not isinstance(name, str):
            raise JsonStreamError("an object key is not a string")
        buf.expect(":")
        if name == streamed and buf.peek() == "[":
            buf.pos += 1
            if buf.peek() == "]":
                buf.pos += 1
            else:
                while True:
                    batch = buf.batch()
                    if batch is not None:
                        for item in batch:
                            yield ITEM, name, item
                    else:
                        yield ITEM, name, buf.value()
                    separator = buf.peek()
                    buf.pos += 1
                    if separator == "]":
                        break
                    if separator != ",":
                        raise JsonStreamError(f"expected ',' or ']' in {name!r}")
        else:
            yield MEMBER, name, buf.value()
        separator = buf.peek()
        buf.pos += 1
        if separator == "}":
            break
        if separator != ",":
            raise JsonStreamError("expected ',' or '}' between members")
    if buf.peek():
        raise JsonStreamError("unexpected data after the object")
