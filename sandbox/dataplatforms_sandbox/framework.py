"""The platform-independent parts of the sandbox.

A platform is one sibling module of this package that defines a subclass of
:class:`Platform` and decorates it with :func:`register_platform`.  The subclass declares

- ``name`` and ``base_path`` (the URL prefix it owns, e.g. ``/redivis/api/v1``),
- ``default_limit`` (requests per window, window seconds) or ``None`` for no limit,
- its rate-limit header style (``rate_limit_headers``, ``reset_encoding``,
  ``limit_retry_after``),
- its routes (:meth:`Platform.register_routes`),
- its credential check (:meth:`Platform.identify`),
- its error body (:meth:`Platform.error`).

The server (``server.py``) finds platform modules by importing every module of the package,
so adding a platform never touches the framework.  Everything a handler needs comes in a
:class:`Request`; it answers with a :class:`Response`.  A minimal platform::

    @register_platform
    class DexiPlatform(Platform):
        name = "dexi"
        base_path = "/dexi"
        default_limit = (75, 1.0)          # per credential key, fixed window
        limit_retry_after = "none"          # 429 without a hint (documented)

        def register_routes(self, router: Router) -> None:
            router.get("/runs", self.list_runs)
            router.get("/runs/{runId}", self.get_run)   # captures arrive decoded

        def identify(self, req: Request) -> Identity:
            key = req.header("x-dexiio-access") or "anonymous"
            return Identity(key=key, ok=key == EXPECTED_DIGEST)

        def error(self, status, message, description=None, headers=None) -> Response:
            return json_response(status, {"error": True, "code": status, "message": message},
                                 headers)

The framework then does, for every request under ``base_path``: forced faults
(``Sandbox.force``) first, then the fixed-window limit keyed by ``Identity.key``
(``over_limit``), then the credential check (``unauthorized``; routes added with
``public=True`` skip it), then routing (``not_found`` / ``method_not_allowed``) and the
handler (exceptions become ``internal_error``), then the rate-limit headers when
``rate_limit_headers`` is set, then ``decorate``; every request lands in the log.
"""

from __future__ import annotations

import bisect
import collections
import email.utils
import json
import math
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, ClassVar
from urllib.parse import unquote

# Forms a wait hint can take on a forced 429 (see shared/apis/README.md).
RETRY_AFTER_FORMS = ("seconds", "http-date", "epoch-s", "epoch-ms", "reset", "none")
# Encodings of an instant in an X-RateLimit-Reset header.
RESET_ENCODINGS = ("epoch-ms", "epoch-s", "delta-seconds")


# --------------------------------------------------------------------------- requests


@dataclass
class Request:
    """One request as a platform handler sees it."""

    method: str
    raw_path: str  # percent-encoded, after the platform's base path ("" for the base itself)
    path: str  # decoded form of raw_path
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    now: float  # arrival time, epoch seconds
    params: dict[str, str] = field(default_factory=dict)  # decoded path captures
    warnings: list[str] = field(default_factory=list)  # user-facing warnings to send back
    context: dict[str, Any] = field(default_factory=dict)  # per-request scratch space

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def arg(self, name: str) -> str | None:
        """First value of a query parameter, or None."""
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body else None


class CutConnection(Exception):
    """Raised by a streamed body to drop the connection mid-response (a network fault)."""


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str | None = "application/json; charset=utf-8"
    # A large body produced piece by piece, sent with chunked transfer encoding.
    stream: Iterable[bytes] | None = None
    # Close the connection without answering (an injected network fault).
    drop: bool = False

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return None

    def has_header(self, name: str) -> bool:
        return self.header(name) is not None

    def set_header(self, name: str, value: str) -> None:
        lname = name.lower()
        self.headers = [(k, v) for k, v in self.headers if k.lower() != lname]
        self.headers.append((name, value))


def json_response(
    status: int, payload: Any, headers: list[tuple[str, str]] | None = None
) -> Response:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return Response(status=status, body=body, headers=list(headers or []))


#: How a platform loses the answer to a request it has carried out (``lose_answer``), in
#: turn: the connection closed without a byte, the body cut off half-way, a server error.
LOST_ANSWERS = ("drop", "cut", "5xx")


def lose_answer(resp: Response, how: str, error: Response) -> Response:
    """The answer the client gets instead of ``resp``, whose work was done: ``drop``,
    ``cut`` (status 200, then the connection breaks mid-body) or ``5xx`` (``error``, the
    platform's own server error)."""
    if how == "drop":
        return Response(status=0, drop=True)
    if how == "cut":
        half = resp.body[: max(1, len(resp.body) // 2)]
        return Response(
            status=resp.status,
            headers=list(resp.headers),
            content_type=resp.content_type,
            stream=_then_cut(half),
        )
    if how == "5xx":
        return error
    raise ValueError(f"unknown lost answer {how!r}; known: {', '.join(LOST_ANSWERS)}")


def _then_cut(part: bytes) -> Iterable[bytes]:
    yield part
    raise CutConnection


def reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


# --------------------------------------------------------------------------- routing

Handler = Callable[[Request], Response]


@dataclass
class Route:
    method: str
    segments: tuple[str, ...]  # literal segments, or "{name}" captures
    handler: Handler
    public: bool = False  # served without credentials


def split_path(path: str) -> list[str]:
    path = path.strip("/")
    return path.split("/") if path else []


class Router:
    """Matches a request's encoded path, one segment at a time.

    Captures are percent-decoded per segment, so an encoded ``/`` inside a reference never
    splits it.
    """

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, pattern: str, handler: Handler, *, public: bool = False) -> None:
        self.routes.append(Route(method.upper(), tuple(split_path(pattern)), handler, public))

    def get(self, pattern: str, handler: Handler, *, public: bool = False) -> None:
        self.add("GET", pattern, handler, public=public)

    def post(self, pattern: str, handler: Handler, *, public: bool = False) -> None:
        self.add("POST", pattern, handler, public=public)

    def match(
        self, method: str, raw_segments: list[str]
    ) -> tuple[Route | None, dict[str, str], list[str]]:
        """Return (route, captures, allowed methods for this path)."""
        allowed: list[str] = []
        lookup = "GET" if method == "HEAD" else method
        for route in self.routes:
            if len(route.segments) != len(raw_segments):
                continue
            captures: dict[str, str] = {}
            for pattern, raw in zip(route.segments, raw_segments, strict=True):
                if pattern.startswith("{") and pattern.endswith("}"):
                    captures[pattern[1:-1]] = unquote(raw)
                elif pattern != raw:
                    break
            else:
                if route.method == lookup:
                    return route, captures, []
                allowed.append(route.method)
        return None, {}, allowed


# --------------------------------------------------------------------------- time encodings


def http_date(instant: float) -> str:
    """IMF-fixdate, e.g. ``Wed, 01 May 2024 10:05:00 GMT``."""
    return email.utils.formatdate(instant, usegmt=True)


def encode_instant(instant: float, encoding: str, now: float) -> str:
    """Encode an absolute instant the way a platform's reset header does."""
    if encoding == "epoch-ms":
        return str(math.ceil(instant * 1000))
    if encoding == "epoch-s":
        return str(math.ceil(instant))
    if encoding == "delta-seconds":
        return str(max(0, math.ceil(instant - now)))
    raise ValueError(f"unknown reset encoding {encoding!r}")


# --------------------------------------------------------------------------- rate limits


@dataclass
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset_at: float  # epoch seconds of the current window's end


class FixedWindowLimiter:
    """A fixed window per credential key; a window opens with the first request after the
    previous one closed.  Rejected requests do not extend or refill the window."""

    def __init__(self, limit: int, window_seconds: float) -> None:
        if limit < 0 or window_seconds <= 0:
            raise ValueError("limit must be >= 0 and window_seconds > 0")
        self.limit = int(limit)
        self.window = float(window_seconds)
        self._windows: dict[str, list[float]] = {}  # key -> [start, count]
        self._lock = threading.Lock()

    def _current(self, key: str, now: float) -> list[float]:
        state = self._windows.get(key)
        if state is None or now >= state[0] + self.window:
            state = [now, 0.0]
            self._windows[key] = state
        return state

    def hit(self, key: str, now: float) -> Verdict:
        with self._lock:
            state = self._current(key, now)
            allowed = state[1] < self.limit
            if allowed:
                state[1] += 1
            remaining = max(0, self.limit - int(state[1]))
            return Verdict(allowed, self.limit, remaining, state[0] + self.window)

    def peek(self, key: str, now: float) -> Verdict:
        with self._lock:
            state = self._windows.get(key)
            if state is None or now >= state[0] + self.window:
                return Verdict(True, self.limit, self.limit, now + self.window)
            remaining = max(0, self.limit - int(state[1]))
            return Verdict(remaining > 0, self.limit, remaining, state[0] + self.window)


class RollingWindowLimiter(FixedWindowLimiter):
    """At most ``limit`` requests per credential key in any ``window_seconds``: the
    stricter reading of a limit whose window the docs do not describe (a fixed window
    lets twice the limit through across its boundary, a rolling one never does)."""

    def __init__(self, limit: int, window_seconds: float) -> None:
        super().__init__(limit, window_seconds)
        self._arrivals: dict[str, collections.deque[float]] = {}

    def _recent(self, key: str, now: float) -> collections.deque[float]:
        arrivals = self._arrivals.setdefault(key, collections.deque())
        while arrivals and arrivals[0] <= now - self.window:
            arrivals.popleft()
        return arrivals

    def hit(self, key: str, now: float) -> Verdict:
        with self._lock:
            arrivals = self._recent(key, now)
            allowed = len(arrivals) < self.limit
            if allowed:
                arrivals.append(now)
            return self._verdict(arrivals, allowed, now)

    def peek(self, key: str, now: float) -> Verdict:
        with self._lock:
            arrivals = self._recent(key, now)
            return self._verdict(arrivals, len(arrivals) < self.limit, now)

    def _verdict(self, arrivals: collections.deque[float], allowed: bool, now: float) -> Verdict:
        remaining = max(0, self.limit - len(arrivals))
        # Room again once the oldest counted request leaves the window.
        reset_at = arrivals[0] + self.window if arrivals else now + self.window
        return Verdict(allowed, self.limit, remaining, reset_at)


LIMIT_WINDOWS = {"fixed": FixedWindowLimiter, "rolling": RollingWindowLimiter}


def make_limiter(kind: str, limit: int, window_seconds: float) -> FixedWindowLimiter:
    """A limiter of the platform's window kind (``Platform.limit_window``)."""
    return LIMIT_WINDOWS[kind](limit, window_seconds)


def busiest_window(times: Iterable[float], window: float = 1.0) -> int:
    """The most arrivals within any ``window`` seconds (every window, not aligned ones)."""
    ordered = sorted(times)
    return max(
        (bisect.bisect_left(ordered, t + window) - i for i, t in enumerate(ordered)), default=0
    )


# --------------------------------------------------------------------------- forced faults


@dataclass
class ForcedFault:
    status: int
    count: int
    retry_after_form: str | None  # None: the platform's own form on 429, none otherwise
    delay: float
    path_contains: str | None

    def matches(self, req: Request) -> bool:
        if self.count <= 0:
            return False
        if self.path_contains is None:
            return True
        return self.path_contains in req.path or self.path_contains in req.raw_path


# --------------------------------------------------------------------------- platforms


@dataclass
class Identity:
    """Who a request claims to be: ``key`` partitions the rate limit (the presented
    credential, valid or not), ``ok`` says whether the credential is accepted."""

    key: str
    ok: bool


class Platform:
    """Base class of one emulated API.  Override the class attributes and the hooks."""

    name: ClassVar[str]
    base_path: ClassVar[str]
    default_limit: ClassVar[tuple[int, float] | None] = None
    # How the limit's window is counted: "fixed" (opened by the first request, what the
    # rate-limit headers of a platform that sends them describe) or "rolling" (any
    # window_seconds; the stricter form where the docs say nothing).
    limit_window: ClassVar[str] = "fixed"
    # Send X-RateLimit-Limit/-Remaining/-Reset on every response.
    rate_limit_headers: ClassVar[bool] = False
    # Encoding of X-RateLimit-Reset (one of RESET_ENCODINGS).
    reset_encoding: ClassVar[str] = "epoch-s"
    # Wait hint on a 429 from the real limiter (one of RETRY_AFTER_FORMS).
    limit_retry_after: ClassVar[str] = "none"
    # Header names whose values never go into the request log.
    secret_headers: ClassVar[tuple[str, ...]] = ("authorization",)
    # Statuses an injected server fault may take (see faults.py).
    fault_statuses: ClassVar[tuple[int, ...]] = (429, 500, 502, 503, 504)

    def __init__(self, seed: int, scale: int) -> None:
        self.seed = seed
        self.scale = scale
        self.router = Router()
        self.register_routes(self.router)

    # -- to override ------------------------------------------------------------------

    @property
    def model(self) -> Any:
        """The object tests read the seeded data from (``Sandbox.<name>``)."""
        return self

    def register_routes(self, router: Router) -> None:
        raise NotImplementedError

    def identify(self, req: Request) -> Identity:
        raise NotImplementedError

    def error(
        self,
        status: int,
        message: str,
        description: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> Response:
        """The platform's error body for ``status``."""
        payload = {"error": message, "status": status}
        return json_response(status, payload, headers)

    # -- hooks with sensible defaults --------------------------------------------------

    def unauthorized(self, req: Request) -> Response:
        return self.error(401, "Unauthorized")

    def not_found(self, req: Request) -> Response:
        return self.error(404, "Not found")

    def method_not_allowed(self, req: Request, allowed: list[str]) -> Response:
        return self.error(405, "Method not allowed", headers=[("Allow", ", ".join(allowed))])

    def internal_error(self, req: Request, exc: BaseException) -> Response:
        return self.error(500, "Internal error")

    def forced_error(self, req: Request, status: int) -> Response:
        return self.error(status, reason_phrase(status), "forced by the sandbox")

    def limit_header_values(
        self, limit: int, remaining: int, reset_at: float, now: float
    ) -> list[tuple[str, str]]:
        return [
            ("X-RateLimit-Limit", str(limit)),
            ("X-RateLimit-Remaining", str(remaining)),
            ("X-RateLimit-Reset", encode_instant(reset_at, self.reset_encoding, now)),
        ]

    def hint_headers(
        self, form: str, now: float, until: float, limit: int | None
    ) -> list[tuple[str, str]]:
        """Headers of one wait-hint form telling the client to wait until ``until``."""
        if form == "seconds":
            return [("Retry-After", str(max(0, math.ceil(until - now))))]
        if form == "http-date":
            return [("Retry-After", http_date(math.ceil(until)))]
        if form == "epoch-s":
            return [("Retry-After", str(math.ceil(until)))]
        if form == "epoch-ms":
            return [("Retry-After", str(math.ceil(until * 1000)))]
        if form == "reset":
            headers = [] if limit is None else [("X-RateLimit-Limit", str(limit))]
            return [
                *headers,
                ("X-RateLimit-Remaining", "0"),
                ("X-RateLimit-Reset", encode_instant(until, self.reset_encoding, now)),
            ]
        if form == "none":
            return []
        raise ValueError(f"unknown retry_after_form {form!r}")

    def over_limit(self, req: Request, verdict: Verdict) -> Response:
        """The answer once a credential's window is exhausted."""
        resp = self.error(429, "Too many requests")
        form = self.limit_retry_after
        if form == "reset":
            form = "none"  # the reset headers are added to every response anyway
        for name, value in self.hint_headers(form, req.now, verdict.reset_at, None):
            resp.set_header(name, value)
        return resp

    def decorate(self, req: Request, resp: Response) -> None:
        """Last touch on every response (e.g. warning headers)."""

    def is_read_only(self, req: Request) -> bool:
        """Whether running the handler changes nothing, so that a fault may run it and
        then spoil the answer (truncated or late)."""
        return req.method in ("GET", "HEAD")

    def end_stream_early(self, req: Request, resp: Response) -> bool:
        """Make a streamed body end cleanly, early, without its end-of-stream marker (an
        injected ``eos`` fault); whether the platform has such bodies and this is one."""
        return False

    def credential_can_expire(self, req: Request) -> bool:
        """Whether the request carries a short-lived credential that has already been
        accepted, and so may expire now (an injected ``expired`` fault)."""
        return False

    def expire_credential(self, req: Request) -> Response:
        """Expire the request's credential and answer as the platform does then."""
        raise NotImplementedError

    def finalize_head(self, req: Request, resp: Response) -> None:
        """HEAD answers carry no body; a platform may move the error elsewhere."""


_REGISTRY: dict[str, type[Platform]] = {}


def register_platform(cls: type[Platform]) -> type[Platform]:
    """Class decorator: make ``cls`` one of the sandbox's platforms."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", cls.name):
        raise ValueError(f"bad platform name {cls.name!r}")
    if not cls.base_path.startswith("/") or cls.base_path.endswith("/"):
        raise ValueError(f"base_path must start with '/' and not end with it: {cls.base_path!r}")
    _REGISTRY[cls.name] = cls
    return cls


def registered_platforms() -> dict[str, type[Platform]]:
    return dict(sorted(_REGISTRY.items()))
