"""Budgets pace requests before sending, measured on a fake clock."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from pyrate_limiter import Rate

from tap_dataplatforms.core.budget import (
    BudgetRegistry,
    credential_fingerprint,
    rates_per_second,
    with_cap,
)
from tap_dataplatforms.core.errors import ConfigError
from tests.helpers import FakeClock


def acquisition_times(budget_rate: float, count: int) -> tuple[list[float], FakeClock]:
    clock = FakeClock()
    budget = BudgetRegistry("memory", clock).get("p", ("cred",), rates_per_second(budget_rate))
    times = []
    for _ in range(count):
        budget.acquire()
        times.append(clock.monotonic())
    return times, clock


def max_in_window(times: list[float], window: float) -> int:
    return max(sum(1 for t in times if start <= t < start + window) for start in times)


def test_budget_never_exceeds_its_rate_in_any_window() -> None:
    times, clock = acquisition_times(5, 23)
    assert max_in_window(times, 1.0) <= 5
    # 23 requests at 5/s need at least four full windows after the first burst.
    assert clock.monotonic() >= 4.0
    assert clock.monotonic() < 4.5


def test_fractional_budget_spaces_requests() -> None:
    times, _ = acquisition_times(0.5, 4)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= 2.0 for gap in gaps)


def test_pause_holds_every_user_of_the_budget() -> None:
    clock = FakeClock()
    registry = BudgetRegistry("memory", clock)
    budget = registry.get("redivis", ("tok",), rates_per_second(100))
    budget.acquire()
    budget.pause_until(clock.time() + 7.5, reason="test")
    # Another stream of the same account gets the same budget object.
    same = registry.get("redivis", ("tok",), rates_per_second(100))
    assert same is budget
    same.acquire()
    assert clock.monotonic() == pytest.approx(7.5, abs=0.01)
    # A pause in the past changes nothing; pauses never shorten.
    assert budget.pause_until(clock.time() - 1, reason="late") == 0.0


def test_budgets_are_per_credential_and_kind() -> None:
    registry = BudgetRegistry("memory", FakeClock())
    a = registry.get("dexi", ("k1",), rates_per_second(75))
    assert registry.get("dexi", ("k2",), rates_per_second(75)) is not a
    assert registry.get("dexi", ("k1",), rates_per_second(15), kind="writes") is not a
    assert "k1" not in a.name  # named by fingerprint, never by the secret


def test_a_fingerprint_is_no_fast_hash_of_the_secret() -> None:
    # A budget's name is readable by anyone with the shared backend: one plain hash per
    # guess must not tell whether a password (Datalinx) was guessed.
    secret = "hunter2"
    fingerprint = credential_fingerprint("", secret)
    assert fingerprint == credential_fingerprint("", secret)  # stable across processes
    assert len(fingerprint) == 16
    for guess in ("\x1f" + secret, secret):
        for algorithm in ("sha256", "sha1", "md5", "sha512"):
            assert fingerprint not in hashlib.new(algorithm, guess.encode()).hexdigest()


def test_rate_conversion() -> None:
    assert [(r.limit, r.interval) for r in rates_per_second(16)] == [(16, 1000)]
    assert [(r.limit, r.interval) for r in rates_per_second(2.5)] == [(25, 10_000)]
    assert [(r.limit, r.interval) for r in rates_per_second(0.25)] == [(1, 4000)]
    with pytest.raises(ConfigError):
        rates_per_second(0)


@pytest.mark.parametrize(
    "backend", ["postgres://db/0", "sqlite://", "sqlite:relative.db", "redis://", "redis://h:1/x"]
)
def test_malformed_backend_is_a_config_error(backend: str) -> None:
    with pytest.raises(ConfigError, match=r"^setting rate_limit_backend: expected 'memory'"):
        BudgetRegistry(backend)


def test_unreachable_redis_is_one_line_naming_the_host_not_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        BudgetRegistry("redis://:hunter2@127.0.0.1:1/0")
    message = str(caught.value)
    assert message.startswith("setting rate_limit_backend: cannot reach redis at 127.0.0.1:1")
    assert "hunter2" not in message
    assert "\n" not in message


def test_documented_cap_is_added_only_where_it_binds() -> None:
    minute = Rate(1000, 60_000)
    assert [(r.limit, r.interval) for r in with_cap(rates_per_second(16), minute)] == [(16, 1000)]
    capped = with_cap(rates_per_second(40), minute)
    assert [(r.limit, r.interval) for r in capped] == [(40, 1000), (1000, 60_000)]
    huge = with_cap(rates_per_second(5000), minute)
    assert [(r.limit, r.interval) for r in huge] == [(999, 1000), (1000, 60_000)]
    # Each is accepted by a bucket.
    BudgetRegistry("memory", FakeClock()).get("x", ("y",), huge)


def test_rate_with_burst_is_a_token_bucket() -> None:
    clock = FakeClock()
    budget = BudgetRegistry("memory", clock).get("p", ("cred",), [Rate(60, 60_000, burst=10)])
    times = []
    for _ in range(30):
        budget.acquire()
        times.append(clock.monotonic())
    # Ten at once, then one a second: never the whole minute's sixty in one go.
    assert times[:10] == [0.0] * 10
    gaps = [b - a for a, b in itertools.pairwise(times[10:])]
    assert all(0.99 <= gap <= 1.01 for gap in gaps), gaps
    assert max_in_window([*times, 1e9], 5.0) <= 10 + 5
