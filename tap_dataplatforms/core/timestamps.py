"""Every timestamp leaves the tap as RFC 3339 in UTC; the conversions live here.

Platforms send epoch milliseconds (Redivis), ``yyyy.MM.dd HH:mm:ss`` (InVision),
ISO 8601 with or without an offset (most others) and naive date-times that mean UTC.

ISO 8601 is read by ``ciso8601`` rather than ``datetime.fromisoformat``: on Python 3.10
(the oldest ``pyproject.toml`` allows) ``fromisoformat`` refuses a trailing ``Z`` and
fractions of 1-5 or 7+ digits, forms the platforms send; ``ciso8601`` reads them alike on
every version (digits past the microsecond are dropped, as Python keeps no more).
"""

from __future__ import annotations

import datetime as dt
import re

import ciso8601

UTC = dt.timezone.utc
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
_INVISION = re.compile(r"^(\d{4})\.(\d{2})\.(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?$")


def format_rfc3339(moment: dt.datetime) -> str:
    """Render an aware or naive (meaning UTC) datetime as RFC 3339 UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def from_epoch_ms(value: float) -> str:
    # Whole milliseconds by integer arithmetic: through a float of seconds, far dates
    # would lose their last microsecond.
    if isinstance(value, int):
        return format_rfc3339(_from_epoch(dt.timedelta(milliseconds=value)))
    return format_rfc3339(_from_epoch(dt.timedelta(seconds=value / 1000.0)))


def from_epoch_s(value: float) -> str:
    return format_rfc3339(_from_epoch(dt.timedelta(seconds=value)))


def _from_epoch(offset: dt.timedelta) -> dt.datetime:
    return _EPOCH + offset


def _epoch_offset(value: float, unit: str) -> str:
    """An epoch number as RFC 3339; one outside the calendar is a ValueError like any
    other unreadable timestamp (never an OverflowError a stream does not expect)."""
    try:
        return from_epoch_ms(value) if unit == "ms" else from_epoch_s(value)
    except (OverflowError, OSError):
        raise ValueError(f"not a timestamp: {value!r} is out of range") from None


def parse_datetime(value: str) -> dt.datetime:
    """Parse ISO 8601 (with ``Z``, an offset, or none = UTC) or InVision's format."""
    text = value.strip()
    match = _INVISION.match(text)
    if match:
        year, month, day, hour, minute, second, frac = match.groups()
        micro = int((frac or "0").ljust(6, "0"))
        return dt.datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro, UTC
        )
    parsed = parse_iso8601(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_iso8601(text: str) -> dt.datetime:
    """ISO 8601 / RFC 3339 as a datetime (naive when the text has no offset); anything
    else is a ValueError, on every supported Python."""
    return ciso8601.parse_datetime(text)


def to_rfc3339(value: object, *, epoch_unit: str = "ms") -> str | None:
    """Normalise a platform timestamp to RFC 3339 UTC.

    Numbers (and numeric strings) are epochs in ``epoch_unit`` (``ms`` or ``s``);
    the platform's documentation says which, so it is never guessed from magnitude.
    ``None`` and empty strings stay ``None``.
    """
    if value is None or value == "":
        return None
    if type(value) is str and len(value) >= 19 and value[4] == "-":
        # The common ISO 8601 form (a date first): parsed without the checks for
        # epochs and InVision's dotted dates, which it cannot be.
        try:
            parsed = ciso8601.parse_datetime(value)
        except ValueError:
            pass
        else:
            if (
                value[10] == "T"
                and value.endswith("+00:00")
                and (len(value) == 25 or (len(value) == 32 and parsed.microsecond))
            ):
                return value  # already what format_rfc3339 would write
            return format_rfc3339(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))
    if isinstance(value, bool):
        raise ValueError(f"not a timestamp: {value!r}")
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.lstrip("-").isdigit():
            value = int(stripped)
        elif stripped.lstrip("-").replace(".", "", 1).isdigit():
            value = float(stripped)
        else:
            return format_rfc3339(parse_datetime(stripped))
    if isinstance(value, (int, float)):
        return _epoch_offset(value, epoch_unit)
    if isinstance(value, dt.datetime):
        return format_rfc3339(value)
    raise ValueError(f"not a timestamp: {value!r}")


def to_invision(moment: dt.datetime) -> str:
    """InVision's monitoring window format, ``yyyy.MM.dd HH:mm:ss`` in UTC."""
    return moment.astimezone(UTC).strftime("%Y.%m.%d %H:%M:%S")
