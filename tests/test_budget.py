"""Budgets pace requests before sending, measured on a fake clock."""

from __future__ import annotations

import hashlib
import itertools
import math
import random
import time
from pathlib import Path

import pytest
from pyrate_limiter import Rate

from tap_dataplatforms.core.budget import (
    PACING_ROOM,
    SHARED_ROOM,
    SYSTEM_CLOCK,
    BudgetRegistry,
    CarryOver,
    credential_fingerprint,
    rates_per_second,
    with_cap,
)
from tap_dataplatforms.core.errors import ConfigError
from tests.helpers import FakeClock
from tests.redis_env import ensure_redis


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


@pytest.mark.parametrize("rate", [5, 37, 37.5, 12.25, 2.5, 0.5, 75, 1000])
def test_any_budget_holds_per_rolling_second_and_is_paced(rate: float) -> None:
    count = max(8, math.ceil(rate * 3))
    times, clock = acquisition_times(rate, count)
    assert max_in_window(times, 1.0) <= math.ceil(rate)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    if rate < 84:
        # Paced, not a window's worth at once: every gap about 1/r (never a burst).
        assert min(gaps) >= 0.999 / rate, min(gaps)
    else:
        # A fast budget may send a few at once (under 2.5 % of a second's worth), to catch
        # up with sleeps that cannot be a fraction of a millisecond.
        assert max_in_window(times, 0.001) <= math.ceil(rate * 0.025), max_in_window(times, 0.001)
    # ... and no slower than the pacing's room needs (5 %, plus millisecond rounding).
    assert clock.monotonic() <= (count - 1) / rate * 1.05 + count * 0.0011, clock.monotonic()


@pytest.mark.parametrize("rate", [37, 37.5, 12.25, 75])
def test_requests_arriving_bunched_still_fit_the_rolling_second(rate: float) -> None:
    # Whatever delays a request on its way (a busy CPU, a thread waiting its turn), up to
    # 45 ms either way, the server's rolling second still sees no more than ceil(r).
    times, _ = acquisition_times(rate, math.ceil(rate * 4))
    jitter = random.Random(7)
    for _ in range(20):
        arrived = [t + jitter.uniform(-0.0225, 0.0225) for t in times]
        assert max_in_window(sorted(arrived), 1.0) <= math.ceil(rate)


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
    # ceil(r) per a little over a second, one at a time (a burst of one).
    shape = [(r.limit, r.interval, r.burst) for r in rates_per_second(16)]
    assert shape == [(16, 1050, 1)]
    assert [(r.limit, r.interval, r.burst) for r in rates_per_second(12.25)] == [(13, 1115, 1)]
    assert [(r.limit, r.interval, r.burst) for r in rates_per_second(0.25)] == [(1, 4200, 1)]
    for wrong in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ConfigError):
            rates_per_second(wrong)


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


def test_documented_cap_is_a_window_where_it_binds() -> None:
    minute = Rate(1000, 60_000)
    uncapped = with_cap(rates_per_second(16), minute)
    assert [(r.limit, r.interval, r.burst) for r in uncapped] == [(16, 1050, 1)]
    # Above 1000 a minute: paced within the second, never more than 1000 in any minute.
    for budget in (40, 1000):
        capped = with_cap(rates_per_second(budget), minute)
        assert (capped[-1].limit, capped[-1].interval) == (1000, 60_000)
        clock = FakeClock()
        paced = BudgetRegistry("memory", clock).get("x", ("y",), capped)
        times = []
        for _ in range(1100):
            paced.acquire()
            times.append(clock.monotonic())
        assert max_in_window(times, 60.0) <= 1000
        assert max_in_window(times, 1.0) <= budget
        # The cap is a window, not a pace: its 1000 go out at the budget's pace.
        assert times[999] < 1000 / budget * 1.1 + 0.5, times[999]


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


# -- the second between two processes ------------------------------------------------------


def next_process(clock: FakeClock) -> FakeClock:
    """The clock of a process started now: the same wall time, its own monotonic time."""
    return FakeClock(wall_start=clock.time())


def test_the_next_process_starts_where_the_last_one_left(tmp_path: Path) -> None:
    clock = FakeClock(wall_start=time.time())
    first = BudgetRegistry("memory", clock, CarryOver(tmp_path)).get(
        "dexi", ("secret-key",), rates_per_second(10)
    )
    for _ in range(5):
        first.acquire()
    # `--discover` ended; the sync starts at once, on the same host and credentials.
    later = next_process(clock)
    second = BudgetRegistry("memory", later, CarryOver(tmp_path)).get(
        "dexi", ("secret-key",), rates_per_second(10)
    )
    second.acquire()
    assert later.monotonic() >= 0.1  # one pace after the first process's last request
    # Without the file the process would have sent at once, on top of the last second.
    fresh = next_process(later)
    alone = BudgetRegistry("memory", fresh, CarryOver(tmp_path / "other")).get(
        "dexi", ("secret-key",), rates_per_second(10)
    )
    alone.acquire()
    assert fresh.monotonic() == 0.0
    # Another account's budget is not held, and no secret is on disk.
    stranger = next_process(later)
    BudgetRegistry("memory", stranger, CarryOver(tmp_path)).get(
        "dexi", ("another-key",), rates_per_second(10)
    ).acquire()
    assert stranger.monotonic() == 0.0
    for path in tmp_path.rglob("*"):
        assert "secret-key" not in path.name
        if path.is_file():
            assert b"secret-key" not in path.read_bytes()


def test_state_of_a_clock_far_ahead_is_ignored(tmp_path: Path) -> None:
    ahead = FakeClock(wall_start=time.time() + 3600)
    BudgetRegistry("memory", ahead, CarryOver(tmp_path)).get(
        "p", ("k",), rates_per_second(1)
    ).acquire()
    (tmp_path / "junk.json").write_text("{not json")
    now = FakeClock(wall_start=time.time())
    budget = BudgetRegistry("memory", now, CarryOver(tmp_path)).get(
        "p", ("k",), rates_per_second(1)
    )
    budget.acquire()
    assert now.monotonic() == 0.0


def test_an_unwritable_state_directory_only_means_starting_paced(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    clock = FakeClock()
    budget = BudgetRegistry("memory", clock, CarryOver(blocked / "budgets")).get(
        "p", ("k",), rates_per_second(2)
    )
    for _ in range(3):
        budget.acquire()
    assert clock.monotonic() == pytest.approx(1.05, abs=0.01)


def test_the_real_clock_keeps_its_state_in_the_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAP_DATAPLATFORMS_STATE_DIR", str(tmp_path))
    registry = BudgetRegistry("memory")
    budget = registry.get("redivis", ("tok-s3cret",), rates_per_second(50))
    budget.acquire()
    files = list((tmp_path / "budgets").iterdir())
    assert [f.name for f in files] == [f"{budget.name.replace(':', '_')}.json"]
    assert b"tok-s3cret" not in files[0].read_bytes()
    assert oct(files[0].stat().st_mode & 0o777) == "0o600"
    # A fake clock leaves nothing on the host; shared backends keep their own state.
    assert BudgetRegistry("memory", FakeClock()).carry_over is None
    assert BudgetRegistry(f"sqlite:///{tmp_path / 'b.sqlite'}").carry_over is None


@pytest.mark.parametrize("rate", [40, 12.25, 75])
def test_a_shared_backend_spaces_requests_wider(tmp_path: Path, rate: float) -> None:
    """Processes sharing a sqlite budget take turns through a file lock and then compete
    for the CPU: their windows are stretched by SHARED_ROOM on top of the pacing room, so
    requests bunched by up to about 100 ms at the server still fit its rolling second."""
    shared = BudgetRegistry(f"sqlite:///{tmp_path / 'b.sqlite'}").get(
        "p", ("cred",), rates_per_second(rate)
    )
    windows = shared.bucket.rates
    # The tightest spacing any window allows, and the whole budget's second.
    spacing_ms = min(w.interval / w.limit for w in windows if w.limit == 1)
    assert spacing_ms >= 1000 / rate * (1 + PACING_ROOM) * (1 + SHARED_ROOM) - 1
    whole = next(w for w in windows if w.limit == math.ceil(rate))
    assert whole.interval >= 1000 * (1 + PACING_ROOM) * (1 + SHARED_ROOM) - 1
    # ceil(r) + 1 requests at that spacing span more than a second by the shared room.
    assert math.ceil(rate) * spacing_ms >= 1000 + 100 * (rate < 84)


@pytest.mark.parametrize("backend", ["memory", "sqlite", "redis"])
# 10,000,000: the benchmark's "unlimited" budget (its burst alone is above the cap)
@pytest.mark.parametrize("rate", [0.5, 1, 12.25, 40, 75, 1000, 5000, 10_000_000])
@pytest.mark.parametrize("cap", [None, Rate(1000, 60_000)])  # Redivis: 1,000 a minute
def test_every_budget_shape_makes_a_bucket_on_every_backend(
    tmp_path: Path, backend: str, rate: float, cap: Rate | None
) -> None:
    """The rates a platform hands over (paced, with a documented longer cap or not) are a
    valid rate list on each backend, shared room included; one request fits at once."""
    if backend == "redis":
        ensure_redis()
    location = {
        "memory": "memory",
        "sqlite": f"sqlite:///{tmp_path / 'b.sqlite'}",
        "redis": "redis://127.0.0.1:6379/0",
    }[backend]
    rates = rates_per_second(rate)
    if cap is not None:
        rates = with_cap(rates, cap)
    credential = (f"shape-{backend}-{rate}-{cap}-{time.time_ns()}",)
    budget = BudgetRegistry(location, FakeClock() if backend == "memory" else SYSTEM_CLOCK).get(
        "p", credential, rates
    )
    assert budget.acquire() == 0
    if backend == "redis":  # a log of requests keeps no expiry: leave none behind
        import redis

        client = redis.Redis.from_url(location)
        for key in client.scan_iter(f"*{credential_fingerprint(*credential)}*"):
            client.delete(key)


def test_one_credential_with_a_budget_of_each_form_on_redis() -> None:
    """A process that counts Redivis's capped budget as windows (a sorted set in redis)
    and one that paces a lower budget as a token bucket (a hash) use the same credential:
    each finds a key of its own form, never one of the other type."""
    ensure_redis()
    import redis

    credential = (f"forms-{time.time_ns()}",)
    backend = "redis://127.0.0.1:6379/0"
    capped = with_cap(rates_per_second(1000), Rate(1000, 60_000))
    paced = rates_per_second(10)
    client = redis.Redis.from_url(backend)
    try:
        for rates in (capped, paced, capped):
            budget = BudgetRegistry(backend).get("redivis", credential, rates)
            assert budget.acquire() >= 0
    finally:
        keys = list(client.scan_iter(f"*{credential_fingerprint(*credential)}*"))
        kinds = sorted(client.type(k).decode() for k in keys)
        for key in keys:
            client.delete(key)
    assert kinds == ["hash", "zset"], kinds
