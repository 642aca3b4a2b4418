"""Property tests of the parsers: wait hints, timestamps, Dexi ``FILE:`` cells, Redivis
references. Each property holds for every input hypothesis draws, hostile text included:
a parser returns its documented answer or its documented refusal, never another error."""

from __future__ import annotations

import datetime as dt
import math
import subprocess
import sys
import textwrap
from urllib.parse import unquote

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dataplatforms_sandbox.framework import (
    RESET_ENCODINGS,
    RETRY_AFTER_FORMS,
    Platform,
    Response,
    Router,
    encode_instant,
    http_date,
)
from tap_dataplatforms.core import ratelimit
from tap_dataplatforms.core.timestamps import parse_datetime, to_invision, to_rfc3339
from tap_dataplatforms.dexi.files import parse_file_cell
from tap_dataplatforms.redivis.client import encode_reference

UTC = dt.timezone.utc
NOW = 1_800_000_000.0  # a receipt instant in 2027
settings.register_profile("tap", max_examples=200, deadline=None, database=None)
settings.load_profile("tap")

instants = st.floats(min_value=1.0e9 + 1, max_value=4.0e9, allow_nan=False)
moments = st.datetimes(
    min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2999, 12, 31), timezones=st.just(UTC)
)


# -- Retry-After and reset values ---------------------------------------------------------


@given(st.integers(min_value=0, max_value=10**9))
def test_a_small_number_is_a_delay_from_receipt(seconds: int) -> None:
    assert ratelimit.parse_instant(str(seconds), received_at=NOW) == NOW + seconds


@given(st.integers(min_value=10**9 + 1, max_value=10**12))
def test_a_large_number_is_an_epoch_in_seconds(epoch: int) -> None:
    assert ratelimit.parse_instant(str(epoch), received_at=NOW) == epoch


@given(st.integers(min_value=10**12 + 1, max_value=10**14))
def test_a_huge_number_is_an_epoch_in_milliseconds(epoch_ms: int) -> None:
    assert ratelimit.parse_instant(str(epoch_ms), received_at=NOW) == epoch_ms / 1000


@given(st.integers(min_value=10**9, max_value=4 * 10**9), st.integers(-3600, 3600))
def test_an_http_date_is_that_instant_corrected_by_the_servers_clock(at: int, skew: int) -> None:
    """The server's clock is ``skew`` seconds behind ours; a gap under 2 s is not skew."""
    server_now = NOW - skew
    instant = ratelimit.parse_instant(
        http_date(at), received_at=NOW, server_date=http_date(server_now)
    )
    assert instant == (at + skew if abs(skew) >= ratelimit.SKEW_THRESHOLD_SECONDS else at)


@given(st.text(max_size=60))
@example("-5")
@example("nan")
@example("inf")
@example("1e400")
@example("Wed, 31 Feb 2024 25:61:00 GMT")
def test_any_header_text_gives_an_instant_or_none(text: str) -> None:
    instant = ratelimit.parse_instant(text, received_at=NOW, server_date=text)
    assert instant is None or (isinstance(instant, float) and not math.isnan(instant))
    if instant is not None:
        assert instant >= 0 or math.isinf(instant)


@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False))
def test_a_wait_is_never_negative_and_implausible_ones_are_refused(offset: float) -> None:
    wait = ratelimit.clamp_wait(NOW + offset, now=NOW)
    if offset > ratelimit.MAX_HINT_SECONDS:
        assert wait is None
    else:
        assert wait == pytest.approx(max(offset, ratelimit.MIN_PAUSE_SECONDS), abs=1e-6)


@given(st.sampled_from(RESET_ENCODINGS), st.floats(min_value=0.0, max_value=600.0))
def test_reset_headers_matter_only_when_the_budget_is_spent(encoding: str, ahead: float) -> None:
    reset = encode_instant(NOW + ahead, encoding, NOW)
    spent = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
    hint = ratelimit.exhausted_until(spent, received_at=NOW)
    assert hint is not None
    assert NOW + ahead <= hint.instant < NOW + ahead + 1.001  # encodings round up
    left = {"X-RateLimit-Remaining": "3", "X-RateLimit-Reset": reset}
    assert ratelimit.exhausted_until(left, received_at=NOW) is None


class _Hints(Platform):
    """Just enough of a sandbox platform to render wait hints."""

    name = "hints"
    base_path = "/hints"

    def register_routes(self, router: Router) -> None:
        pass


@given(
    st.sampled_from([f for f in RETRY_AFTER_FORMS if f != "none"]),
    st.sampled_from(RESET_ENCODINGS),
    st.floats(min_value=0.0, max_value=600.0),
)
def test_every_hint_the_sandbox_can_send_is_read_back_as_its_instant(
    form: str, encoding: str, ahead: float
) -> None:
    """The sandbox's rendering (framework.py) and the tap's reading agree to the second."""
    platform = _Hints(seed=1, scale=1)
    platform.reset_encoding = encoding
    headers = dict(platform.hint_headers(form, NOW, NOW + ahead, limit=10))
    headers["Date"] = http_date(NOW)
    hint = ratelimit.wait_hint(headers, received_at=NOW)
    assert hint is not None
    assert abs(hint.instant - (NOW + ahead)) <= 1.001


# -- timestamps in every platform's format ------------------------------------------------


def _same_instant(text: str | None, moment: dt.datetime) -> bool:
    assert text is not None
    assert text.endswith("+00:00")
    return parse_datetime(text) == moment


@given(moments, st.integers(min_value=-14 * 60, max_value=14 * 60))
def test_iso_8601_with_any_offset_leaves_as_the_same_utc_instant(
    moment: dt.datetime, minutes: int
) -> None:
    """Re:infer, Datalinx, Dexi listings: ISO 8601 with an offset, ``Z`` or none (UTC)."""
    zone = dt.timezone(dt.timedelta(minutes=minutes))
    assert _same_instant(to_rfc3339(moment.astimezone(zone).isoformat()), moment)
    assert _same_instant(to_rfc3339(moment.isoformat().replace("+00:00", "Z")), moment)
    assert _same_instant(to_rfc3339(moment.replace(tzinfo=None).isoformat()), moment)


def _with_fraction(moment: dt.datetime, digits: int, zone: str, separator: str = "T") -> str:
    """``moment`` written with ``digits`` fraction digits (0: none) and ``zone`` as its
    suffix: the forms Python 3.10's ``fromisoformat`` refuses (1-5 or 7+ digits, ``Z``)."""
    text = moment.strftime(f"%Y-%m-%d{separator}%H:%M:%S")
    if digits:
        micro = f"{moment.microsecond:06d}"
        text += "." + (micro + "987")[:digits] if digits > 6 else "." + micro[:digits]
    return text + zone


@given(
    moments,
    st.integers(min_value=0, max_value=9),
    st.sampled_from(["Z", "z", "+00:00", "-00:00", "+05:30", "-08:00", ""]),
    st.sampled_from(["T", "t", " "]),
)
@example(dt.datetime(2024, 5, 1, 10, 0, 0, 120000, tzinfo=UTC), 2, "Z", "T")
@example(dt.datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC), 9, "+00:00", "T")
def test_any_fraction_length_and_a_trailing_z_parse_on_every_python(
    moment: dt.datetime, digits: int, zone: str, separator: str
) -> None:
    """1 to 9 fraction digits, ``Z`` or an offset: the instant, to the microsecond that
    the digits carry (digits past the sixth are dropped, not rounded)."""
    offset = dt.timedelta(0)
    if zone[:1] in ("+", "-") and zone[1:] != "00:00":
        hours, minutes = zone[1:].split(":")
        offset = dt.timedelta(hours=int(hours), minutes=int(minutes))
        offset = -offset if zone[0] == "-" else offset
    local = moment.astimezone(dt.timezone(offset))
    text = _with_fraction(local, digits, zone, separator)
    kept = 10 ** (6 - min(digits, 6))
    expected = moment.replace(microsecond=moment.microsecond // kept * kept)
    assert parse_datetime(text) == expected
    assert _same_instant(to_rfc3339(text), expected)


def test_timestamps_parse_in_a_process_without_the_sdk() -> None:
    """On Python 3.10 importing singer-sdk swaps ``datetime.fromisoformat`` for a backport
    that reads these forms; the parser must not depend on that side effect (the sandbox,
    scripts and any code run before the SDK is imported go without it)."""
    code = textwrap.dedent(
        """
        import sys
        from tap_dataplatforms.core.timestamps import to_rfc3339
        assert "singer_sdk" not in sys.modules
        for text in ("2024-05-01T10:00:00.1Z", "2024-05-01T10:00:00.12345+00:00",
                     "2024-05-01T12:00:00.123456789+02:00", "2024-05-01T10:00:00Z"):
            print(to_rfc3339(text))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "2024-05-01T10:00:00.100000+00:00",
        "2024-05-01T10:00:00.123450+00:00",
        "2024-05-01T10:00:00.123456+00:00",
        "2024-05-01T10:00:00+00:00",
    ]


@given(st.integers(min_value=0, max_value=32503680000000))
def test_epoch_milliseconds_redivis_and_dexi(epoch_ms: int) -> None:
    moment = dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(milliseconds=epoch_ms)
    assert _same_instant(to_rfc3339(epoch_ms, epoch_unit="ms"), moment)
    assert _same_instant(to_rfc3339(str(epoch_ms), epoch_unit="ms"), moment)


@given(st.integers(min_value=0, max_value=32503680000))
def test_epoch_seconds_datalinx(epoch_s: int) -> None:
    moment = dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(seconds=epoch_s)
    assert _same_instant(to_rfc3339(epoch_s, epoch_unit="s"), moment)


@given(moments)
def test_invisions_dotted_format_round_trips_to_the_second(moment: dt.datetime) -> None:
    whole = moment.replace(microsecond=0)
    text = to_invision(moment)
    assert text == whole.strftime("%Y.%m.%d %H:%M:%S")
    assert parse_datetime(text) == whole
    assert _same_instant(to_rfc3339(text), whole)


@given(st.one_of(st.text(max_size=40), st.integers(), st.floats(), st.booleans(), st.none()))
@example("2024-13-45T99:00:00Z")
@example("2024.02.30 10:00:00")
@example(10**30)
@example(-(10**30))
@example(float("nan"))
def test_any_value_is_a_timestamp_none_or_a_value_error(value: object) -> None:
    """The streams catch ValueError around conversions; nothing else may escape."""
    try:
        result = to_rfc3339(value)
    except ValueError:
        return
    assert result is None or parse_datetime(result).tzinfo is not None


# -- Dexi FILE: cells -----------------------------------------------------------------------

segment = st.text(st.characters(blacklist_characters=";/\x00", codec="utf-8"), min_size=1)


@given(
    st.from_regex(r"\A[a-z]+/[a-z0-9.+-]+\Z"),
    st.integers(min_value=0, max_value=10**12),
    st.lists(segment, min_size=1, max_size=6),
)
def test_a_file_cell_gives_its_mime_type_size_and_id(
    mime: str, size: int, parts: list[str]
) -> None:
    file_id = "accounts/" + "/".join(parts)
    assert parse_file_cell(f"FILE:{mime};{size};{file_id}") == (mime, size, file_id)
    # Whatever comes before `accounts/` in the last segment is not part of the id (doc).
    assert parse_file_cell(f"FILE:{mime};{size};https://x.example/{file_id}") == (
        mime,
        size,
        file_id,
    )


@given(st.text(max_size=80))
@example("FILE:")
@example("FILE:;;")
@example("FILE:image/png;-3;accounts/a")
def test_any_cell_is_a_file_reference_or_not_never_an_error(cell: str) -> None:
    parsed = parse_file_cell(cell)
    if not cell.startswith("FILE:"):
        assert parsed is None
    elif parsed is not None:
        _mime, size, file_id = parsed
        assert file_id
        assert ";" not in file_id
        assert size is None or size >= 0


# -- Redivis references ---------------------------------------------------------------------


def _reference(parts: list[str]) -> str:
    return ".".join(parts)


reference_parts = st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=5)


@given(reference_parts)
@example(["demo", "cms_synthetic_patient_data_omop:55qc:v2_1", "payments:sxx7"])
@example(["user/with/slashes", "table?x=1#y"])
def test_a_reference_is_one_path_segment_that_decodes_back(parts: list[str]) -> None:
    reference = _reference(parts)
    encoded = encode_reference(reference)
    assert "/" not in encoded
    assert "?" not in encoded
    assert "#" not in encoded
    assert unquote(encoded) == reference
    # The emulator's router, which splits paths on `/`, sees exactly one capture.
    router = Router()
    router.get("/tables/{tableRef}/variables", lambda req: Response(200))
    route, params, _ = router.match("GET", ["tables", encoded, "variables"])
    assert route is not None
    assert params == {"tableRef": reference}
