"""Request budgets: how many requests a platform account may send, enforced before sending.

A budget of ``r`` requests a second is paced: requests leave about ``1/r`` apart
(slightly more, ``PACING_ROOM``), never a whole window's worth at once, so that at most
``ceil(r)`` arrive at the server in any rolling second even when the machine is busy and
requests reach the server a little bunched. The pacing is pyrate-limiter's GCRA (its
``TokenBucket``) with a burst of one; this module adds what the tap needs around it:
an injectable clock (tests pace a budget without sleeping), a pause that server
headers can impose on every user of the budget, the hand-over of the pacing state to
the next process on the host (``CarryOver``), and one function that chooses the
bucket backend from ``rate_limit_backend``.

With a shared backend (``sqlite:///PATH`` for processes on one host,
``redis://HOST:PORT/DB`` for processes on many) the counts and the pauses live in the
backend, under a name made of the platform, a fingerprint of the credential and the
budget's kind, so every process spending one account's budget waits for the others.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import gettempdir
from typing import TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import urlsplit

from pyrate_limiter import (
    AbstractBucket,
    AbstractClock,
    InMemoryBucket,
    InMemoryStateStore,
    Rate,
    RateItem,
    RedisBucket,
    RedisStateStore,
    SQLiteBucket,
    StateBucket,
    TokenBucket,
    WallClock,
)

from tap_dataplatforms.core.errors import ConfigError, TapDataPlatformsError

if TYPE_CHECKING:
    from redis import Redis

logger = logging.getLogger("tap-dataplatforms.budget")
#: A wait for the budget longer than this is logged when it starts.
LONG_WAIT_SECONDS = 5.0

_LEAK_EVERY = 256
#: Tries of a budget check against a shared backend that does not answer, before the
#: sync stops (about 15 s of backoff: long enough for a Redis failover).
BACKEND_TRIES = 6


class BudgetBackendError(TapDataPlatformsError):
    """The shared budget backend stopped answering during the sync."""


def backend_errors() -> tuple[type[BaseException], ...]:
    """What a shared backend raises when it cannot be reached or used."""
    errors: list[type[BaseException]] = [sqlite3.Error, OSError]
    try:
        import redis
    except ImportError:
        return tuple(errors)
    return (*errors, redis.RedisError)


class Clock:
    """Wall time, monotonic time and sleep, replaceable in tests."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


SYSTEM_CLOCK = Clock()


class _BudgetClockAdapter(AbstractClock):
    """pyrate-limiter's clock interface over the budget's clock (milliseconds).

    Rounded up: a paced request is due at an instant in microseconds, and a clock
    rounded down would keep it waiting another whole millisecond once that instant has
    come. The pace itself cannot be exceeded (each request moves the due instant on).
    """

    def __init__(self, clock: Clock) -> None:
        self._budget_clock = clock

    def now(self) -> int:
        return math.ceil(self._budget_clock.monotonic() * 1000)


#: Requests are spaced this much wider than ``1/r``: a request may reach the server up to
#: about 50 ms later or earlier than its neighbours (a loaded machine, a thread that waits
#: for the CPU) and the rolling second at the server still counts no more than ``ceil(r)``.
PACING_ROOM = 0.05


def paced(limit: float, interval_ms: float) -> Rate:
    """``limit`` requests per ``interval_ms``, paced: ``PACING_ROOM`` apart more than the
    rate itself asks, one at a time.

    Only a fast rate gets a small burst, to catch up with the sleeps of a busy machine
    (a request due every 0.2 ms cannot wait for each): at most half the requests the
    room leaves in a second, so the other half still absorbs bunched arrivals.
    """
    whole = math.ceil(limit)
    spaced = math.ceil(whole * interval_ms * (1 + PACING_ROOM) / limit)
    spare = limit * 1000 / interval_ms * PACING_ROOM / (1 + PACING_ROOM)
    return Rate(whole, spaced, burst=max(1, min(whole, math.floor(spare / 2))))


#: A shared backend spaces requests this much wider again: several processes take their
#: turns through one lock (a sqlite file, a redis round trip) and then compete for the CPU
#: before the request leaves, so their requests reach the server more bunched than one
#: process's threads do (seen: 41 in one rolling second of a 40/s budget, four processes
#: under a CPU burner, with ``PACING_ROOM`` alone).
SHARED_ROOM = 0.10


def shared_room(rates: list[Rate]) -> list[Rate]:
    """``rates`` with ``SHARED_ROOM`` more time per window, for a shared backend.

    Windows keep the order pyrate-limiter requires (longer windows, larger limits, no
    higher density): a window whose rounding would leave it denser than the one before
    it is widened to that one's density.
    """
    stretched: list[Rate] = []
    for rate in rates:
        interval = math.ceil(rate.interval * (1 + SHARED_ROOM))
        if stretched:
            before = stretched[-1]
            interval = max(interval, math.ceil(rate.limit * before.interval / before.limit))
        stretched.append(Rate(rate.limit, interval, burst=rate.burst))
    return stretched


def rates_per_second(requests_per_second: float) -> list[Rate]:
    """Express a (possibly fractional) requests-per-second budget as a paced rate.

    ``ceil(r)`` requests per a little over a second, one at a time: 12.25 becomes 13 per
    1115 ms, a request every 86 ms, so no rolling second holds more than 13.
    """
    if not requests_per_second > 0 or math.isinf(requests_per_second):
        raise ConfigError(f"a request budget must be positive, got {requests_per_second}")
    return [paced(requests_per_second, 1000)]


def density(rate: Rate) -> float:
    """Requests per millisecond a rate sustains."""
    return rate.limit / rate.interval


def with_cap(rates: list[Rate], cap: Rate) -> list[Rate]:
    """Add a platform's documented longer window (``limit`` per ``interval``) where it binds.

    The budget stays paced within the second; the cap is counted as a sliding window
    (a token bucket would let twice its limit through in one of its windows), so the
    budget becomes windows (``as_windows``), the cap last. pyrate-limiter wants them
    ordered generous-before-tight: longer windows with larger limits and lower density.
    """
    if min(density(rate) for rate in rates) <= density(cap):
        return rates
    windows = as_windows(rates)
    last = windows[-1]
    if last.interval >= cap.interval:
        return rates
    if last.limit >= cap.limit:
        windows = [*windows[:-1], Rate(cap.limit - 1, last.interval)]
    # A shorter window (a budget's burst) may now hold as many as a longer one after it
    # (a budget far above the cap); it is held one below, which the longer window
    # already enforces within its span.
    for index in range(len(windows) - 2, -1, -1):
        ceiling = windows[index + 1].limit
        if windows[index].limit >= ceiling:
            windows[index] = Rate(max(1, ceiling - 1), windows[index].interval)
    return [*windows, cap]


_BACKEND_FORMS = "expected 'memory', 'sqlite:///PATH' or 'redis://HOST:PORT/DB'"
#: Prefix of every key and table the tap writes into a shared backend.
KEY_PREFIX = "tap-dataplatforms"


@dataclass(frozen=True)
class Backend:
    """A parsed ``rate_limit_backend``: its kind and where it lives."""

    kind: str  # memory, sqlite or redis
    location: str = ""  # the sqlite file, or the redis URL

    @property
    def shared(self) -> bool:
        return self.kind != "memory"

    def describe(self) -> str:
        """Where the backend is, for messages: never a password of a redis URL."""
        if self.kind == "redis":
            parts = urlsplit(self.location)
            return f"redis at {parts.hostname}:{parts.port or 6379}"
        if self.kind == "sqlite":
            return f"sqlite file {self.location}"
        return "memory"


def parse_backend(text: str) -> Backend:
    """Read ``rate_limit_backend``; a malformed value is a one-line ConfigError."""
    value = (text or "").strip()
    if value == "memory":
        return Backend("memory")
    scheme = value.split(":", 1)[0].lower()
    if scheme == "sqlite":
        if not value.lower().startswith("sqlite:///") or len(value) <= len("sqlite:///"):
            raise ConfigError(f"setting rate_limit_backend: {_BACKEND_FORMS} (no file path given)")
        return Backend("sqlite", value[len("sqlite:///") :])
    if scheme in {"redis", "rediss"}:
        try:
            parts = urlsplit(value)
            port = parts.port
            db = parts.path.strip("/")
        except ValueError:
            raise ConfigError(f"setting rate_limit_backend: {_BACKEND_FORMS}") from None
        if not parts.hostname or (db and not db.isdigit()) or (port is not None and port <= 0):
            raise ConfigError(f"setting rate_limit_backend: {_BACKEND_FORMS}")
        return Backend("redis", value)
    raise ConfigError(f"setting rate_limit_backend: {_BACKEND_FORMS}")


def connect_redis(backend: Backend) -> Redis:
    """A client of the backend's redis, proven by a PING (fail before any request)."""
    try:
        import redis
    except ImportError:
        raise ConfigError(
            "setting rate_limit_backend: a redis backend needs the redis client "
            "(pip install 'tap-dataplatforms[redis]')"
        ) from None
    client = redis.Redis.from_url(backend.location, socket_connect_timeout=5, socket_timeout=10)
    try:
        client.ping()
    except redis.RedisError as exc:
        # The exception text can quote the URL, password included: name the host only.
        raise ConfigError(
            f"setting rate_limit_backend: cannot reach {backend.describe()} ({type(exc).__name__})"
        ) from None
    return client


#: The shortest window the sqlite backend keeps (its timestamps are whole milliseconds):
#: a rate faster than one request per this many milliseconds is held as a small burst.
_MIN_WINDOW_MS = 10


def as_windows(rates: list[Rate]) -> list[Rate]:
    """Sliding windows that admit no more than the token buckets of ``rates``.

    The sqlite backend keeps a log of requests, not a bucket's state. A rate of
    ``limit`` per ``interval`` with a burst of ``burst`` is then two windows: ``burst``
    (at least what fits ``_MIN_WINDOW_MS``) per the time the bucket takes to refill
    that many, and ``limit`` per ``interval``. A window admits again one millisecond
    after its span (its start is inclusive), hence the span one short of the refill.
    """
    windows: list[Rate] = []
    for rate in rates:
        burst = max(rate.burst, math.ceil(_MIN_WINDOW_MS * rate.limit / rate.interval))
        if burst < rate.limit:
            refill = math.ceil(burst * rate.interval / rate.limit)
            windows.append(Rate(burst, max(1, refill - 1)))
        windows.append(Rate(rate.limit, rate.interval))
    return windows


def _table_name(key: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", key.lower())


class _ClockedMemoryBucket(InMemoryBucket):
    """An in-memory sliding-window bucket whose timestamps come from the budget's clock."""

    def __init__(self, rates: list[Rate], clock: Clock) -> None:
        super().__init__(rates)
        self._budget_clock = clock

    def now(self) -> int:
        return int(self._budget_clock.monotonic() * 1000)


def is_window(rates: list[Rate]) -> bool:
    """Rates given as plain windows (``limit`` per ``interval``, no burst of their own, or
    several of them), which log buckets count exactly; a single paced rate is kept as a
    token bucket (one small state, handed to the next process by ``CarryOver``)."""
    return len(rates) > 1 or all(rate.burst == rate.limit > 1 for rate in rates)


def make_bucket(
    backend: str | Backend,
    rates: list[Rate],
    *,
    clock: Clock,
    key: str = "budget",
    redis_client: Redis | None = None,
    carry_over: CarryOver | None = None,
) -> AbstractBucket:
    """Choose the bucket that holds a budget's counts (the one place that does).

    ``key`` names the budget in a shared backend (a sqlite table, a redis key); it is
    made of names and fingerprints only, never of a secret. ``carry_over`` hands a
    memory budget's pacing to the next process on this host.
    """
    parsed = backend if isinstance(backend, Backend) else parse_backend(backend)
    window = is_window(rates)
    if parsed.shared:
        rates = shared_room(rates)
    if parsed.kind == "memory":
        if window:
            return _ClockedMemoryBucket(as_windows(rates), clock)
        # A token bucket: `limit` per `interval` sustained, never more than `burst` at
        # once (1 for the tap's own budgets: paced).
        store: InMemoryStateStore = (
            carry_over.store(key, rates, clock) if carry_over is not None else InMemoryStateStore()
        )
        return StateBucket(
            rates, algorithm=TokenBucket(), store=store, clock=_BudgetClockAdapter(clock)
        )
    if parsed.kind == "sqlite":
        Path(parsed.location).parent.mkdir(parents=True, exist_ok=True)
        # The file lock makes count-then-insert one step across processes; without it
        # two processes could both see room for the last request of a window.
        try:
            return SQLiteBucket.init_from_file(
                as_windows(rates),
                table=_table_name(f"{KEY_PREFIX}:{key}"),
                db_path=parsed.location,
                use_file_lock=True,
            )
        except sqlite3.Error as exc:
            raise ConfigError(
                f"setting rate_limit_backend: cannot use {parsed.describe()} ({exc})"
            ) from None
    client = redis_client if redis_client is not None else connect_redis(parsed)
    # The key names its form, a log of requests (a sorted set) or a token bucket's state
    # (a hash): the same credential with another budget setting (Redivis's documented cap
    # binds above about 16 a second) never meets a key of the other type (WRONGTYPE).
    redis_key = f"{KEY_PREFIX}:budget:{key}:{'log' if window else 'bucket'}"
    if window:
        return cast("AbstractBucket", RedisBucket.init(as_windows(rates), client, redis_key))
    # Wall time: the state is shared between machines, where monotonic clocks differ.
    return StateBucket(
        rates,
        algorithm=TokenBucket(),
        store=RedisStateStore(client, redis_key),
        clock=WallClock(),
    )


# --------------------------------------------------------------------------- carry-over


def default_state_dir() -> Path:
    """Where memory budgets leave their pacing for the next process: the user's state
    directory (``$TAP_DATAPLATFORMS_STATE_DIR``, else ``$XDG_STATE_HOME`` or
    ``~/.local/state``, under ``tap-dataplatforms/budgets``)."""
    explicit = os.environ.get("TAP_DATAPLATFORMS_STATE_DIR")
    if explicit:
        return Path(explicit) / "budgets"
    base = os.environ.get("XDG_STATE_HOME") or ""
    if not base:
        try:
            base = str(Path.home() / ".local" / "state")
        except RuntimeError:  # no home directory to speak of
            base = str(Path(gettempdir()) / f"tap-dataplatforms-{os.getuid()}")
    return Path(base) / "tap-dataplatforms" / "budgets"


#: Bytes of one carry-over file: the state is rewritten in place, padded to this size.
_CARRY_SIZE = 512


class CarryOver:
    """Each memory budget's pacing state in a small file of its own, so that the first
    requests of a process do not add to the last ones of the process just before it
    (``meltano run`` runs ``--discover`` and then the sync back to back).

    A file is named after the budget (platform, credential fingerprint, kind: never a
    secret) and holds, per rate, the wall-clock instant its pacing reaches (GCRA's
    theoretical arrival time). It is rewritten in place after every request, so even a
    process that is killed leaves its last instant. Whatever cannot be read or written
    is skipped: the next process then simply starts paced.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._ready: bool | None = None

    def _file(self, key: str) -> Path | None:
        if self._ready is None:
            try:
                self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
                self._ready = os.access(self.directory, os.W_OK)
            except OSError:
                self._ready = False
            if not self._ready:
                logger.debug("Budget state not kept: %s is not writable", self.directory)
        return self.directory / f"{_table_name(key)}.json" if self._ready else None

    def store(self, key: str, rates: list[Rate], clock: Clock) -> InMemoryStateStore:
        path = self._file(key)
        fd: int | None = None
        seeded = None
        if path is not None:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
                seeded = _seed(os.pread(fd, _CARRY_SIZE, 0), rates, clock)
            except OSError as exc:
                logger.debug("Budget state not kept in %s: %s", path, exc)
        return _CarriedStore(rates, clock, fd, seeded)


def _rate_key(rate: Rate) -> str:
    return f"{rate.limit}/{rate.interval}/{rate.burst}"


def _seed(data: bytes, rates: list[Rate], clock: Clock) -> tuple[int, ...] | None:
    """The state a new bucket starts from: the instants the last process left, for the
    rates it shares with this one, on this process's clock (microseconds)."""
    try:
        stored = json.loads(data.decode("utf-8").strip() or "{}")
    except ValueError:  # torn by a concurrent write, or not ours: start paced
        return None
    if not isinstance(stored, dict) or not stored:
        return None
    now_wall = clock.time()
    offset_us = (clock.monotonic() - now_wall) * 1_000_000
    state = []
    for rate in rates:
        instant = stored.get(_rate_key(rate))
        # An instant beyond what the rate itself could owe is no state of a real
        # clock's (a test's fake clock, a clock since set back): ignored.
        if not isinstance(instant, int | float) or not (
            now_wall < instant <= now_wall + rate.interval / 1000
        ):
            state.append(0)
            continue
        state.append(int(instant * 1_000_000 + offset_us))
    return tuple(state) if any(state) else None


class _CarriedStore(InMemoryStateStore):
    """An in-process GCRA state that starts from, and leaves, a carry-over file."""

    def __init__(
        self, rates: list[Rate], clock: Clock, fd: int | None, seeded: tuple[int, ...] | None
    ) -> None:
        super().__init__()
        self._keys = [_rate_key(rate) for rate in rates]
        self._clock = clock
        self._fd = fd
        self._state = seeded

    def check(self, algorithm: Any, rates: list[Rate], now: int, weight: int) -> Any:
        decision = super().check(algorithm, rates, now, weight)
        if decision.allowed and self._fd is not None and self._state is not None:
            offset_us = (self._clock.time() - self._clock.monotonic()) * 1_000_000
            instants = {
                key: round((tat + offset_us) / 1_000_000, 6)
                for key, tat in zip(self._keys, self._state, strict=True)
            }
            data = json.dumps(instants).encode().ljust(_CARRY_SIZE)
            try:
                if len(data) == _CARRY_SIZE:
                    os.pwrite(self._fd, data, 0)
            except OSError:
                self._fd = None  # the next process starts paced
        return decision


class PauseBoard(Protocol):
    """Where a shared backend keeps each budget's pause: a wall-clock instant."""

    def paused_until(self, key: str) -> float: ...

    def extend(self, key: str, instant: float) -> None: ...


# Only ever extends a pause (a later 429 never shortens an earlier Retry-After), and
# lets the key expire with it so that finished pauses leave nothing behind.
_EXTEND_PAUSE_LUA = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local wanted = tonumber(ARGV[1])
if wanted > current then
    redis.call('SET', KEYS[1], ARGV[1])
    redis.call('PEXPIREAT', KEYS[1], math.ceil(wanted * 1000) + 1000)
end
return 0
"""


class RedisPauseBoard:
    """Pauses as redis keys holding the instant (epoch seconds) the pause ends."""

    def __init__(self, client: Redis) -> None:
        self._client = client
        self._extend = client.register_script(_EXTEND_PAUSE_LUA)

    @staticmethod
    def _key(key: str) -> str:
        return f"{KEY_PREFIX}:pause:{key}"

    def paused_until(self, key: str) -> float:
        value = self._client.get(self._key(key))
        return float(cast("Any", value)) if value is not None else 0.0

    def extend(self, key: str, instant: float) -> None:
        self._extend(keys=[self._key(key)], args=[repr(float(instant))])


class SQLitePauseBoard:
    """Pauses as rows of one table in the backend's sqlite file."""

    def __init__(self, path: str) -> None:
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(path, timeout=30, check_same_thread=False)
            with self._conn:
                self._conn.execute(
                    "CREATE TABLE IF NOT EXISTS budget_pauses "
                    "(budget TEXT PRIMARY KEY, until REAL NOT NULL)"
                )
        except sqlite3.Error as exc:
            raise ConfigError(
                f"setting rate_limit_backend: cannot use sqlite file {path} ({exc})"
            ) from None

    def paused_until(self, key: str) -> float:
        with self._lock:
            row = self._conn.execute(
                "SELECT until FROM budget_pauses WHERE budget = ?", (key,)
            ).fetchone()
        return float(row[0]) if row else 0.0

    def extend(self, key: str, instant: float) -> None:
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT INTO budget_pauses (budget, until) VALUES (?, ?) "
                "ON CONFLICT (budget) DO UPDATE SET until = max(until, excluded.until)",
                (key, float(instant)),
            )


#: Salt and rounds of a credential's fingerprint (PBKDF2-HMAC-SHA256). Every process must
#: derive the same name, so the salt is fixed; the rounds make each guess of a password
#: cost what a fingerprint does (once per credential and process), not one fast hash.
_FINGERPRINT_SALT = b"tap-dataplatforms:budget-credential"
_FINGERPRINT_ROUNDS = 200_000


@functools.lru_cache(maxsize=64)
def credential_fingerprint(*parts: str) -> str:
    """A stable, non-reversible name for a credential (never the secret itself), which a
    reader of the shared backend cannot test guesses of a password against cheaply."""
    digest = hashlib.pbkdf2_hmac(
        "sha256", "\x1f".join(parts).encode(), _FINGERPRINT_SALT, _FINGERPRINT_ROUNDS
    )
    return digest.hex()[:16]


@dataclass
class Budget:
    """One platform account's request budget."""

    name: str
    rates: list[Rate]
    bucket: AbstractBucket
    clock: Clock = SYSTEM_CLOCK
    #: Where other processes see this budget's pauses (shared backends only).
    pauses: PauseBoard | None = None
    #: The backend, for messages (``Backend.describe``: never a password).
    where: str = "memory"
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _paused_until: float = 0.0  # monotonic
    _puts: int = 0
    waited_seconds: float = 0.0
    acquired: int = 0
    #: Requests of this process sent and not yet answered (``acquire(in_flight=True)``).
    in_flight: int = 0
    #: Requests the server's last ``X-RateLimit-Remaining`` leaves for this process until
    #: ``_allowance_until`` (monotonic), after those still in flight; ``None``: no word.
    _allowance: int | None = None
    _allowance_until: float = 0.0

    def done(self) -> None:
        """A request counted in flight was answered (or failed)."""
        with self._lock:
            self.in_flight -= 1

    def observe_remaining(self, remaining: float, reset_at: float) -> bool:
        """The server says ``remaining`` requests are left until the wall-clock
        ``reset_at``; the requests still in flight will spend some. True when nothing is
        left for new ones (the caller pauses the budget until ``reset_at``)."""
        with self._lock:
            seconds = reset_at - self.clock.time()
            if seconds <= 0:
                self._allowance = None
                return False
            left = math.floor(remaining) - max(self.in_flight - 1, 0)
            self._allowance = max(left, 0)
            self._allowance_until = self.clock.monotonic() + seconds
            return left <= 0

    def _shared_pause(self) -> float:
        if self.pauses is None:
            return 0.0
        return self.pauses.paused_until(self.name) - self.clock.time()

    def acquire(self, *, in_flight: bool = False) -> float:
        """Block until one more request fits the budget; return the seconds waited.
        ``in_flight``: the request counts as in flight until :meth:`done`."""
        waited = 0.0
        failures = 0
        announced = False
        while True:
            try:
                pause = self._try_acquire(waited, in_flight)
            except backend_errors() as exc:
                failures += 1
                if failures >= BACKEND_TRIES:
                    raise BudgetBackendError(
                        f"setting rate_limit_backend: lost {self.where} ({type(exc).__name__})"
                    ) from None
                pause = min(0.5 * 2 ** (failures - 1), 8.0)
                logger.warning(
                    "Budget %s: %s did not answer (%s); retrying in %.1fs",
                    self.name,
                    self.where,
                    type(exc).__name__,
                    pause,
                )
            if pause is None:
                return waited
            if pause > LONG_WAIT_SECONDS and not announced:
                announced = True  # a long wait is said when it starts, not found as a hang
                platform, *_, kind = self.name.split(":")
                logger.info("%s: waiting %.0fs for the %s budget", platform, pause, kind)
            self.clock.sleep(pause)
            waited += pause

    def _try_acquire(self, waited: float, in_flight: bool = False) -> float | None:
        """Take one request if it fits now (``None``), else the seconds to wait."""
        with self._lock:
            # Read before each request: another process may have been told to wait.
            now = self.clock.monotonic()
            pause = max(self._paused_until - now, self._shared_pause())
            if pause > 0:
                return pause
            if self._allowance is not None:
                if now >= self._allowance_until:
                    self._allowance = None
                elif self._allowance <= 0:
                    return max(self._allowance_until - now, 0.001)
            item = RateItem(self.name, cast("int", self.bucket.now()), 1)
            if self.bucket.put(item):
                self._puts += 1
                if self._puts % _LEAK_EVERY == 0:
                    self.bucket.leak(item.timestamp)
                self.acquired += 1
                self.waited_seconds += waited
                if self._allowance is not None:
                    self._allowance -= 1
                if in_flight:
                    self.in_flight += 1
                return None
            wait_ms = self.bucket.waiting(item)
            return max(cast("int", wait_ms), 1) / 1000.0

    def pause_until(self, instant: float, *, reason: str) -> float:
        """Hold every request of this budget until the wall-clock ``instant``.

        Returns the pause in seconds from now. Pauses only ever extend.
        """
        now_wall = self.clock.time()
        seconds = instant - now_wall
        if seconds <= 0:
            return 0.0
        with self._lock:
            target = self.clock.monotonic() + seconds
            if target > self._paused_until:
                self._paused_until = target
                logger.info("Budget %s paused %.2fs (%s)", self.name, seconds, reason)
            if self.pauses is not None:
                try:
                    self.pauses.extend(self.name, instant)
                except backend_errors() as exc:
                    # This process still waits; the next acquire retries the backend.
                    logger.warning(
                        "Budget %s: pause not shared, %s did not answer (%s)",
                        self.name,
                        self.where,
                        type(exc).__name__,
                    )
        return seconds

    def paused_for(self) -> float:
        local = max(0.0, self._paused_until - self.clock.monotonic())
        try:
            return max(local, self._shared_pause())
        except backend_errors():
            return local


class BudgetRegistry:
    """The budgets of one tap process, one per platform and credential."""

    def __init__(
        self,
        backend: str = "memory",
        clock: Clock = SYSTEM_CLOCK,
        carry_over: CarryOver | None = None,
    ) -> None:
        self.backend = backend
        self.clock = clock
        self._budgets: dict[str, Budget] = {}
        self._lock = threading.Lock()
        # A shared backend is reached here, when the tap starts, so an unreachable one
        # fails before the first request rather than in the middle of a stream.
        self._parsed = parse_backend(backend)
        self._redis: Redis | None = None
        self.pauses: PauseBoard | None = None
        if self._parsed.kind == "redis":
            self._redis = connect_redis(self._parsed)
            self.pauses = RedisPauseBoard(self._redis)
        elif self._parsed.kind == "sqlite":
            Path(self._parsed.location).parent.mkdir(parents=True, exist_ok=True)
            self.pauses = SQLitePauseBoard(self._parsed.location)
        # Memory budgets hand their pacing to the next process on the host; shared
        # backends keep it themselves. A test's fake clock leaves no trace on the host.
        if carry_over is None and self._parsed.kind == "memory" and clock is SYSTEM_CLOCK:
            carry_over = CarryOver(default_state_dir())
        self.carry_over = carry_over if self._parsed.kind == "memory" else None

    def get(
        self, platform: str, credential: Sequence[str], rates: list[Rate], kind: str = "requests"
    ) -> Budget:
        """The budget of ``kind`` (e.g. reads, writes) for one platform credential."""
        name = f"{platform}:{credential_fingerprint(*credential)}:{kind}"
        with self._lock:
            budget = self._budgets.get(name)
            if budget is None:
                bucket = make_bucket(
                    self._parsed,
                    rates,
                    clock=self.clock,
                    key=name,
                    redis_client=self._redis,
                    carry_over=self.carry_over,
                )
                budget = Budget(
                    name=name,
                    rates=rates,
                    bucket=bucket,
                    clock=self.clock,
                    pauses=self.pauses,
                    where=self._parsed.describe(),
                )
                self._budgets[name] = budget
            return budget

    def __iter__(self) -> Iterator[Budget]:
        return iter(list(self._budgets.values()))
