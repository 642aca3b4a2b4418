"""Re:infer comments: their timestamps as the tap writes them, and comment pages passed on
as sent.

Post-processing changes little of a comment: it adds the source's id, project and name,
and writes its timestamps as RFC 3339 UTC (most already are). So a page's comments need
not be decoded and encoded again: each goes out as the JSON text the platform sent, with
the stream's members added at its end and any timestamp rewritten in the text itself.
Whatever only decoding tells (a member the stream would overwrite, a value conformance
would change, a body not on one line or not valid UTF-8) leaves the comment, or the
page, to the decoding path, so both paths give the same records (tested, also on
generated pages).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import msgspec

from tap_dataplatforms.core.http import decode_json, response_json
from tap_dataplatforms.core.records import EncodedRecords
from tap_dataplatforms.core.timestamps import format_rfc3339, parse_iso8601, to_rfc3339

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import requests

# -- timestamps ----------------------------------------------------------------------------

#: Conversions kept (comments share timestamps: a batch imported at once, a message sent
#: when its comment was stamped); emptied when full.
CONVERTED: dict[str, str] = {}
_CONVERTED_MAX = 4096
_FROM_ISO = parse_iso8601


def _shortcut(value: str) -> tuple[Any, int] | None:
    """RFC 3339 UTC already (as the tap writes it, or with a zero fraction): the parsed
    value and the text's length, read without ``to_rfc3339``'s calls; else ``None``."""
    size = len(value)
    if (
        (size == 25 or size == 32)
        and value[4] == "-"
        and value[10] == "T"
        and value.endswith("+00:00")
    ):
        try:
            return _FROM_ISO(value), size
        except ValueError:
            return None
    return None


def rfc3339(value: Any) -> str | None:
    """A comment timestamp as the tap writes it: what ``to_rfc3339`` gives, quicker."""
    if type(value) is not str:
        return to_rfc3339(value)
    hit = CONVERTED.get(value)
    if hit is not None:
        return hit
    converted: str | None = None
    short = _shortcut(value)
    if short is not None:
        parsed, size = short
        # what to_rfc3339 writes for it: the text itself, or without a zero fraction
        converted = value if size == 25 or parsed.microsecond else format_rfc3339(parsed)
    if converted is None:
        converted = to_rfc3339(value)
        if converted is None:
            return None
    if len(CONVERTED) >= _CONVERTED_MAX:
        CONVERTED.clear()
    CONVERTED[value] = converted
    return converted


def unchanged(value: str) -> bool:
    """Whether ``rfc3339`` gives this text back as it is, known without its cache (a
    timestamp seen once is the common case: every comment has its own)."""
    short = _shortcut(value)
    return short is not None and (short[1] == 25 or short[0].microsecond != 0)


def normalise(comment: dict[str, Any]) -> dict[str, Any]:
    """A decoded comment's timestamps as the tap writes them, in place."""
    # A conversion already kept is looked up here, without the call (most are).
    kept = CONVERTED.get
    for name in ("timestamp", "created_at"):
        value = comment.get(name)
        if value is not None:
            hit = kept(value) if type(value) is str else None
            comment[name] = hit if hit is not None else rfc3339(value)
    for message in comment.get("messages") or []:
        if isinstance(message, dict):
            value = message.get("sent_at")
            if value is not None:
                hit = kept(value) if type(value) is str else None
                message["sent_at"] = hit if hit is not None else rfc3339(value)
    return comment


# -- pages -----------------------------------------------------------------------------


class _Page(msgspec.Struct):
    """A comment page as a worker reads it: the cursor, and each comment left as its JSON
    text (``msgspec.Raw``), so the sync's thread need not find them again."""

    comments: list[msgspec.Raw] | None = None
    continuation: str | None = None


_PAGE = msgspec.json.Decoder(_Page).decode

#: A page body and its comments' JSON texts (``None`` when the body is JSON of another
#: shape, or JSON only to Python: it is then decoded whole).
PageRead = tuple[bytes, "list[msgspec.Raw] | None"]


def read_page(response: requests.Response) -> tuple[PageRead, str | None]:
    """A page's body, its comments as JSON texts and its ``continuation``; a body that
    is not JSON raises ValueError."""
    content = response.content
    try:
        page = _PAGE(content)
    except msgspec.MsgspecError:
        pass
    else:
        return (content, page.comments), page.continuation or None
    body = response_json(response)  # what msgspec refuses may still be JSON to Python (NaN)
    token = body.get("continuation") if isinstance(body, dict) else None
    return (content, None), token or None


def page_records(
    content: bytes,
    comments: list[msgspec.Raw] | None,
    suffix: bytes | None,
    check_order: Callable[[str], None],
) -> Iterator[EncodedRecords | dict[str, Any]]:
    """A page's comments for the record loop: passed on as sent (``page_as_sent``) when
    ``suffix`` (the members the stream adds) is given and the page allows it, else
    decoded for post-processing."""
    if suffix is not None and comments is not None and passable(content):
        yield from page_as_sent(content, comments, suffix, check_order)
    else:
        yield from decode_page(content)


def decode_page(content: bytes) -> list[Any]:
    """A page's comments, decoded."""
    return decode_json(content).get("comments") or []


# -- passed on as sent --------------------------------------------------------------------


class _Sent(msgspec.Struct):
    sent_at: Any = msgspec.UNSET


class _AsSent(msgspec.Struct):
    """The members of a comment that decide whether it can be passed on as sent: those
    post-processing rewrites or adds. Nothing else of the comment is decoded."""

    timestamp: Any = msgspec.UNSET
    created_at: Any = msgspec.UNSET
    messages: list[_Sent] | msgspec.UnsetType | None = msgspec.UNSET
    has_annotations: Any = msgspec.UNSET
    source_id: Any = msgspec.UNSET
    project: Any = msgspec.UNSET
    source_name: Any = msgspec.UNSET


class _PageAsSent(msgspec.Struct):
    comments: list[_AsSent]


_PAGE_AS_SENT = msgspec.json.Decoder(_PageAsSent).decode
_UNSET = msgspec.UNSET
#: A ``\\uD800``-``\\uDFFF`` escape: half of a surrogate pair, or a lone one.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def passable(content: bytes) -> bool:
    """Whether a page's comments can go out as their own JSON text: on one line, valid
    UTF-8 and without surrogate escapes (what the decoding path would refuse or change
    is left to it)."""
    if b"\n" in content or b"\r" in content:
        return False
    # (a search for one byte is far quicker than for two: most pages have no escapes)
    if b"\\" in content and _SURROGATE_ESCAPE.search(content):
        return False
    if not content.isascii():
        try:
            content.decode("utf-8")
        except UnicodeDecodeError:
            return False
    return True


def _rewritten(raw: msgspec.Raw, sent: _AsSent) -> tuple[bytes, str] | None:
    """A comment's text with its timestamps rewritten as ``rfc3339`` has them, less its
    closing brace, and its ``timestamp``; ``None`` where only decoding tells.

    Each text to rewrite must occur exactly as often as the fields that hold it, so no
    other member (a property or text holding the same characters) can be touched.
    """
    stamp = sent.timestamp
    values = [stamp]
    created = sent.created_at
    if created is not _UNSET and created is not None:
        if type(created) is not str:
            return None
        values.append(created)
    for message in sent.messages or ():
        value = message.sent_at
        if value is not _UNSET and value is not None:
            if type(value) is not str:
                return None
            values.append(value)
    text = bytes(raw)
    converted_stamp = stamp
    for value in dict.fromkeys(values):
        try:
            converted = rfc3339(value)
        except ValueError:
            return None  # the decoding path raises it, as it always did
        if converted is None:
            return None
        if value == stamp:
            converted_stamp = converted
        if converted != value:
            quoted = b'"' + value.encode() + b'"'
            if text.count(quoted) != values.count(value):
                return None
            text = text.replace(quoted, b'"' + converted.encode() + b'"')
    return text[:-1], converted_stamp


def page_as_sent(
    content: bytes,
    comments: list[msgspec.Raw],
    suffix: bytes,
    check_order: Callable[[str], None],
) -> Iterator[EncodedRecords | dict[str, Any]]:
    """A page's comments: runs of them encoded as sent (``suffix``, the stream's members
    and the closing brace, ends each), and, where only decoding tells what
    post-processing would make of one, that comment decoded. ``check_order`` sees each
    passed comment's ``timestamp`` in turn (decoded ones are checked by post-processing).
    Yields nothing of a page that is not to be passed on: see ``passable``."""
    try:
        sents = _PAGE_AS_SENT(content).comments
    except msgspec.MsgspecError:
        sents = None
    if sents is None or len(sents) != len(comments):
        yield from decode_page(content)
        return
    texts: list[Any] = []
    stamps: list[str] = []
    for raw, sent in zip(comments, sents, strict=True):
        passed: tuple[Any, str] | None = None
        stamp = sent.timestamp
        flag = sent.has_annotations
        if (
            type(stamp) is str
            and sent.source_id is _UNSET
            and sent.project is _UNSET
            and sent.source_name is _UNSET
            and (flag is _UNSET or flag is None or type(flag) is bool)
        ):
            created = sent.created_at
            messages = sent.messages
            # The common case: every timestamp as the tap writes it already.
            if (
                unchanged(stamp)
                and (
                    created is _UNSET
                    or created is None
                    or (type(created) is str and unchanged(created))
                )
                and (
                    not messages
                    or all(
                        m.sent_at is _UNSET
                        or m.sent_at is None
                        or m.sent_at == stamp
                        or (type(m.sent_at) is str and unchanged(m.sent_at))
                        for m in messages
                    )
                )
            ):
                passed = (memoryview(raw)[:-1], stamp)
            else:
                passed = _rewritten(raw, sent)
        if passed is None:
            if texts:
                yield EncodedRecords(texts, suffix, stamps)
                texts, stamps = [], []
            yield decode_json(raw)
            continue
        check_order(passed[1])
        texts.append(passed[0])
        stamps.append(passed[1])
    if texts:
        yield EncodedRecords(texts, suffix, stamps)
