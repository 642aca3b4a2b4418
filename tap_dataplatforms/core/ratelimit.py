"""Reading a server's wait hints: ``Retry-After`` and ``X-RateLimit-*`` in every form.

Every hint becomes an absolute instant (epoch seconds, local clock) before anyone
sleeps on it. Forms, told apart by shape and magnitude (see the API notes' README):

* delay seconds, ``Retry-After: 30``: receipt + 30 s;
* an HTTP-date: that instant, corrected for the server's clock via its ``Date`` header;
* epoch seconds (``> 10**9``) and epoch milliseconds (``> 10**12``): that instant.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from dataclasses import dataclass

EPOCH_MS_THRESHOLD = 10**12
EPOCH_S_THRESHOLD = 10**9
# A wait longer than this is taken for a misread header, not an order.
MAX_HINT_SECONDS = 15 * 60
# A hint already in the past still earns a short pause before the retry.
MIN_PAUSE_SECONDS = 0.25
# The Date header has whole-second resolution; a smaller gap is not clock skew.
SKEW_THRESHOLD_SECONDS = 2.0


def parse_instant(
    value: str | None, *, received_at: float, server_date: str | None = None
) -> float | None:
    """Turn one wait hint into an absolute instant, or ``None`` if unreadable."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        return _http_date_instant(text, received_at=received_at, server_date=server_date)
    if number != number or number < 0:  # NaN or negative
        return None
    if number > EPOCH_MS_THRESHOLD:
        return number / 1000.0
    if number > EPOCH_S_THRESHOLD:
        return number
    return received_at + number


def _http_date_instant(text: str, *, received_at: float, server_date: str | None) -> float | None:
    try:
        instant = email.utils.parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if server_date:
        try:
            server_now = email.utils.parsedate_to_datetime(server_date).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            server_now = None
        if server_now is not None:
            skew = received_at - server_now
            if abs(skew) >= SKEW_THRESHOLD_SECONDS:
                instant += skew
    return instant


@dataclass(frozen=True)
class WaitHint:
    """When the server says requests may resume, and which header said so."""

    instant: float
    source: str


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    return value if value is None else str(value)


def retry_after(headers: Mapping[str, str], *, received_at: float) -> WaitHint | None:
    """The ``Retry-After`` instant of a response, in whatever form it came."""
    instant = parse_instant(
        _header(headers, "Retry-After"),
        received_at=received_at,
        server_date=_header(headers, "Date"),
    )
    return None if instant is None else WaitHint(instant, "Retry-After")


def exhausted_until(
    headers: Mapping[str, str], *, received_at: float, in_flight: int = 0
) -> WaitHint | None:
    """The reset instant when ``X-RateLimit-Remaining`` says the budget is spent, or
    will be once the ``in_flight`` requests sent meanwhile are counted.

    A reset header alone is no order to wait; it matters only at zero remaining.
    """
    window = remaining_window(headers, received_at=received_at)
    if window is None or window[0] > max(0, in_flight):
        return None
    return WaitHint(window[1], "X-RateLimit-Reset")


def remaining_window(
    headers: Mapping[str, str], *, received_at: float
) -> tuple[float, float] | None:
    """(``X-RateLimit-Remaining``, the reset instant) when both are given and readable."""
    remaining = _header(headers, "X-RateLimit-Remaining")
    if remaining is None:
        return None
    try:
        left = float(remaining)
    except ValueError:
        return None
    instant = parse_instant(
        _header(headers, "X-RateLimit-Reset"),
        received_at=received_at,
        server_date=_header(headers, "Date"),
    )
    return None if instant is None else (left, instant)


def wait_hint(headers: Mapping[str, str], *, received_at: float) -> WaitHint | None:
    """The server's wait hint for a rejected response: Retry-After first, then reset."""
    return retry_after(headers, received_at=received_at) or exhausted_until(
        headers, received_at=received_at
    )


def clamp_wait(instant: float, *, now: float) -> float | None:
    """Seconds to wait for ``instant``; ``None`` when the hint is implausible."""
    wait = instant - now
    if wait > MAX_HINT_SECONDS:
        return None
    return max(wait, MIN_PAUSE_SECONDS)
