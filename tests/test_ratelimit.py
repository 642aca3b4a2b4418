"""Wait hints in every form become the instant the server meant."""

from __future__ import annotations

import email.utils

import pytest

from tap_dataplatforms.core import ratelimit

NOW = 1_800_000_000.0  # a whole second, in epoch seconds


def http_date(instant: float) -> str:
    return email.utils.formatdate(instant, usegmt=True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30", NOW + 30),  # delay seconds
        ("0", NOW),
        ("2.5", NOW + 2.5),
        (str(int(NOW + 30)), NOW + 30),  # epoch seconds
        (str(int((NOW + 30) * 1000)), NOW + 30),  # epoch milliseconds
        (http_date(NOW + 30), NOW + 30),  # HTTP-date
    ],
)
def test_retry_after_forms(value: str, expected: float) -> None:
    assert ratelimit.parse_instant(value, received_at=NOW) == pytest.approx(expected)


@pytest.mark.parametrize("value", ["", "soon", "-5", "nan", None])
def test_unreadable_hints_are_none(value: str | None) -> None:
    assert ratelimit.parse_instant(value, received_at=NOW) is None


def test_http_date_is_corrected_for_server_clock_skew() -> None:
    # The server's clock runs 60 s behind ours: its instant means 60 s later for us.
    server_now = NOW - 60
    instant = ratelimit.parse_instant(
        http_date(server_now + 10), received_at=NOW, server_date=http_date(server_now)
    )
    assert instant == pytest.approx(NOW + 10)


def test_http_date_ignores_sub_second_date_resolution() -> None:
    # Date has whole seconds: 0.9 s apart is resolution, not skew.
    instant = ratelimit.parse_instant(
        http_date(NOW + 5), received_at=NOW + 0.9, server_date=http_date(NOW)
    )
    assert instant == pytest.approx(NOW + 5)


def test_reset_header_matters_only_when_remaining_is_zero() -> None:
    reset = str(int((NOW + 7) * 1000))
    spent = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
    assert ratelimit.exhausted_until(spent, received_at=NOW) == ratelimit.WaitHint(
        NOW + 7, "X-RateLimit-Reset"
    )
    left = {"X-RateLimit-Remaining": "3", "X-RateLimit-Reset": reset}
    assert ratelimit.exhausted_until(left, received_at=NOW) is None
    assert ratelimit.exhausted_until({"X-RateLimit-Reset": reset}, received_at=NOW) is None


def test_wait_hint_prefers_retry_after_then_reset() -> None:
    headers = {
        "Retry-After": "4",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(int(NOW + 9)),
    }
    assert ratelimit.wait_hint(headers, received_at=NOW).instant == NOW + 4  # type: ignore[union-attr]
    del headers["Retry-After"]
    assert ratelimit.wait_hint(headers, received_at=NOW).instant == NOW + 9  # type: ignore[union-attr]


def test_clamp_wait() -> None:
    assert ratelimit.clamp_wait(NOW + 3, now=NOW) == 3
    assert ratelimit.clamp_wait(NOW - 3, now=NOW) == ratelimit.MIN_PAUSE_SECONDS
    assert ratelimit.clamp_wait(NOW + 3600, now=NOW) is None  # a misread, not an order
