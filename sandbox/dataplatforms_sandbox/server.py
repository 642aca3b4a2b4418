"""The sandbox HTTP server: routing by platform prefix, rate limits, faults, request log.

Python use::

    sb = Sandbox(seed=1, scale=1).start()
    requests.get(sb.base_url("redivis") + "/users/jdoe/datasets", headers=...)
    sb.stop()

Command line (console script ``tap-dataplatforms-sandbox``)::

    tap-dataplatforms-sandbox --port 0 --seed 1 --scale 1 --limit redivis=1000/60
    tap-dataplatforms-sandbox --faults 0.1 --fault-seed 3   # 10% of requests fail (faults.py)

Control endpoints (outside every platform prefix, never rate limited, never logged):

- ``GET  /_sandbox/health``                     -> ``{"status": "ok", "platforms": {...}, ...}``
- ``GET  /_sandbox/requests?platform=redivis``  -> ``{"count": n, "requests": [log entries]}``
- ``GET  /_sandbox/peak?platform=dexi&window=1`` -> ``{"requests", "peak", "rejected"}``: the
  most requests that arrived within any rolling window (seconds), and the 429 answers
- ``POST /_sandbox/clear-log``
- ``POST /_sandbox/force``   body: the arguments of :meth:`Sandbox.force` plus ``platform``
- ``POST /_sandbox/force-shape``  body: the arguments of :meth:`Sandbox.force_shape`
- ``POST /_sandbox/clear-forced``  body: optional ``{"platform": ...}``
- ``POST /_sandbox/change``  -> ``{"generation": n, "changes": [...]}``: :meth:`Sandbox.change`
- ``POST /_sandbox/limits``  body: ``{"platform", "limit", "window_seconds"}`` (limit null = off)
- ``GET  /_sandbox/faults``  -> ``{"rate", "seed", "kinds", "counts": {platform: {kind: n}}}``
- ``POST /_sandbox/faults``  body: the arguments of :meth:`Sandbox.set_faults`

By default one read endpoint per platform answers now and then with an HTML error page or
an empty body and status 200, once (``GLITCHES``); ``Sandbox(glitches=False)`` or
``--no-glitches`` turns that off.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import pkgutil
import re
import signal
import socket
import ssl
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .faults import FAULT_KINDS, PRE_HANDLER_KINDS, FaultInjector, FaultPlan
from .framework import (
    RETRY_AFTER_FORMS,
    CutConnection,
    FixedWindowLimiter,
    ForcedFault,
    Identity,
    Platform,
    Request,
    Response,
    Verdict,
    busiest_window,
    http_date,
    json_response,
    make_limiter,
    reason_phrase,
    registered_platforms,
    split_path,
)

CONTROL_PREFIX = "/_sandbox"
_FRAMEWORK_MODULES = {"server", "framework", "credentials", "faults"}
_MAX_LOG = 500_000


def load_platform_classes() -> dict[str, type[Platform]]:
    """Import every sibling module so that its ``@register_platform`` runs."""
    package = __name__.rsplit(".", 1)[0]
    path = sys.modules[package].__path__
    for info in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
        if info.name.startswith("_") or info.name in _FRAMEWORK_MODULES:
            continue
        importlib.import_module(f"{package}.{info.name}")
    return registered_platforms()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], app: Sandbox) -> None:
        self.app = app
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up (it timed out on a late answer, or was killed) is part of
        # the job, not a sandbox error worth a traceback.
        if isinstance(sys.exc_info()[1], ConnectionResetError | BrokenPipeError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 300  # idle keep-alive connections are dropped after this
    server: _Server

    # -- connection bookkeeping (so stop() can cut keep-alive connections) -------------

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.app.verbose:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    # -- dispatch -----------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        now = time.time()
        app = self.server.app
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            self._send(json_response(400, {"error": "unreadable request body"}), head=False)
            return
        split = urlsplit(self.path)
        raw_path = split.path or "/"
        query = parse_qs(split.query, keep_blank_values=True)
        headers = {k.lower(): v for k, v in self.headers.items()}
        head = self.command == "HEAD"

        if raw_path == CONTROL_PREFIX or raw_path.startswith(CONTROL_PREFIX + "/"):
            resp = app._control(self.command, raw_path[len(CONTROL_PREFIX) :], query, body)
            self._send(resp, head=head)
            return

        platform = app._platform_for(raw_path)
        if platform is None:
            resp = json_response(404, {"error": f"no emulated platform serves {raw_path}"})
            entry = app._log_entry(None, self.command, raw_path, raw_path, query, headers, now)
            self._send(resp, head=head, log=entry)
            return

        rest = raw_path[len(platform.base_path) :]
        req = Request(
            method=self.command,
            raw_path=rest,
            path=unquote(rest),
            query=query,
            headers=headers,
            body=body,
            now=now,
        )
        if app.latency_seconds:
            time.sleep(app.latency_seconds)
        resp, extra = app._serve(platform, req)
        if head:
            platform.finalize_head(req, resp)
        entry = app._log_entry(platform, self.command, req.path, rest, query, headers, now)
        entry.update(extra)
        self._send(resp, head=head, log=entry)

    def _send(self, resp: Response, *, head: bool, log: dict[str, Any] | None = None) -> None:
        headers: list[tuple[str, str]] = [("Date", http_date(time.time()))]
        if resp.content_type and (resp.body or resp.stream is not None):
            headers.append(("Content-Type", resp.content_type))
        headers.extend(resp.headers)
        if resp.stream is not None and not head:
            headers.append(("Transfer-Encoding", "chunked"))
        else:
            headers.append(("Content-Length", str(len(resp.body))))
        if resp.drop:
            self._drop(log)
            return
        if self.close_connection:
            headers.append(("Connection", "close"))
        status_line = f"{self.protocol_version} {resp.status} {reason_phrase(resp.status)}"
        lines = [status_line] + [f"{k}: {v}" for k, v in headers]
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if not head:
            data += resp.body
        if log is not None:
            log["status"] = resp.status
            sent: dict[str, str] = {}
            for name, value in headers:
                sent[name] = f"{sent[name]}, {value}" if name in sent else value
            log["headers_sent"] = sent
            self.server.app._append_log(log)
        self.log_request(resp.status)
        try:
            self.wfile.write(data)
            if resp.stream is not None and not head:
                self._send_chunks(resp.stream)
        except OSError:
            self.close_connection = True

    def _drop(self, log: dict[str, Any] | None) -> None:
        """Close the connection without a byte of answer."""
        if log is not None:
            log["status"] = None
            log["headers_sent"] = {}
            self.server.app._append_log(log)
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _send_chunks(self, chunks: Iterable[bytes]) -> None:
        pace = self.server.app.link_bytes_per_second
        started = time.monotonic()
        sent = 0
        try:
            for chunk in chunks:
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    if pace:
                        # A far link carries so many bytes a second per connection: the
                        # chunk is held until the link would have carried it.
                        sent += len(chunk)
                        ahead = sent / pace - (time.monotonic() - started)
                        if ahead > 0:
                            time.sleep(ahead)
        except CutConnection:
            # Drop the connection without the closing chunk: the client sees a broken body.
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(b"0\r\n\r\n")


class Sandbox:
    """Local emulator of the tap's APIs, served from a background thread."""

    def __init__(
        self,
        seed: int = 1,
        scale: int = 1,
        limits: dict[str, tuple[int, float]] | None = None,
        verbose: bool = False,
        latency_ms: float = 0.0,
        link_mbps: float = 0.0,
        bulk: dict[str, tuple[int, int | None]] | None = None,
        faults: float = 0.0,
        fault_seed: int = 0,
        glitches: bool = True,
    ) -> None:
        if scale < 1:
            raise ValueError("scale must be >= 1")
        self._injector = FaultInjector(FaultPlan(rate=faults, seed=fault_seed))
        self.seed = seed
        self.scale = scale
        self.verbose = verbose
        # Added before every platform request (not control ones), as a far server would.
        self.latency_seconds = max(0.0, float(latency_ms)) / 1000.0
        # Streamed bodies (Redivis read streams) capped per connection, as
        # one TCP connection over a long link is; 0 is loopback speed.
        self.link_bytes_per_second = max(0.0, float(link_mbps)) * 1_000_000 / 8
        self._lock = threading.Lock()
        self._log: list[dict[str, Any]] = []
        self._faults: dict[str, list[ForcedFault]] = {}
        self._shapes: dict[str, list[list[Any]]] = {}
        # Transient wrong shapes, on by default (see GLITCHES): matching answers so far.
        self._glitches: dict[str, re.Pattern[str]] = dict(GLITCHES) if glitches else {}
        self._glitch_seen: dict[str, int] = {}
        #: Answers a glitch replaced: (platform, path, shape).
        self.glitched: list[tuple[str, str, str]] = []
        self._limiters: dict[str, FixedWindowLimiter | None] = {}
        self._platforms: dict[str, Platform] = {}
        for name, cls in load_platform_classes().items():
            self._platforms[name] = cls(seed, scale)
            self._faults[name] = []
            default = cls.default_limit
            self._limiters[name] = (
                None if default is None else make_limiter(cls.limit_window, *default)
            )
        for name, (limit, window) in (limits or {}).items():
            self.set_limit(name, limit, window)
        # Benchmark-sized data: platform -> what its ``add_bulk`` made (in /health).
        self.bulk: dict[str, Any] = {}
        for name, (size, per_partition) in (bulk or {}).items():
            add = getattr(self.platform(name), "add_bulk", None)
            if add is None:
                raise ValueError(f"{name} has no bulk data knob")
            self.bulk[name] = add(int(size), per_partition)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._scheme = "http"
        #: How many times the data changed as between two syncs (``change``).
        self.generation = 0

    # -- lifecycle ---------------------------------------------------------------------

    def start(
        self, host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None
    ) -> Sandbox:
        """Serve from a background thread; with ``tls`` (a server-side context holding a
        certificate), serve HTTPS."""
        if self._server is not None:
            raise RuntimeError("sandbox already started")
        self._server = _Server((host, port), self)
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._scheme = "https" if tls is not None else "http"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="sandbox-http",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server = self._server
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with server.connections_lock:
            open_connections = list(server.connections)
        for conn in open_connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Sandbox:
        return self if self._server is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses and data ------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("sandbox not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("sandbox not started")
        host = str(self._server.server_address[0])
        if ":" in host:
            host = f"[{host}]"
        return f"{self._scheme}://{host}:{self.port}"

    @property
    def platforms(self) -> list[str]:
        return list(self._platforms)

    def platform(self, name: str) -> Platform:
        try:
            return self._platforms[name]
        except KeyError:
            raise ValueError(f"unknown platform {name!r}") from None

    def base_url(self, platform: str) -> str:
        return self.url + self.platform(platform).base_path

    def __getattr__(self, name: str) -> Any:
        # sb.redivis, sb.dexi, ...: the platform's data model
        platforms = self.__dict__.get("_platforms")
        if platforms is not None and name in platforms:
            return platforms[name].model
        raise AttributeError(name)

    # -- knobs -------------------------------------------------------------------------

    def changing_table(self) -> Any:
        """The Redivis table ``change`` gives a new version: the first readable table with
        rows of the ``demo`` organization's datasets."""
        for ds in self.redivis.datasets_by_owner["demo"]:
            if ds.may("data"):
                for table in ds.current_tables:
                    if table.num_rows and not table.is_file_index:
                        return table
        raise LookupError("no readable Redivis table")

    def change(self) -> dict[str, Any]:
        """What a day changes on the platforms, applied between two syncs: a Dexi dataset
        loses rows, a robot gains an output column (whose type widens from integer to
        number at the next change) and an idle run is deleted, an InVision data flow
        rewrites its tables with half their rows and a new column, a Redivis table gets a
        new version with a new variable and half its rows, a Re:infer dataset loses a
        stream and a labelled comment and an empty source goes, a Datalinx pipeline's
        oldest run is purged and a user and a custom role are removed. Returns the
        generation and a line per change."""
        with self._lock:
            self.generation += 1
            generation = self.generation
        changes = [
            *self.dexi.change(generation),
            *self.invision.change(generation),
            *self.redivis.change(self.changing_table()),
            *self.reinfer.change(generation),
            *self.datalinx.change(generation),
        ]
        return {"generation": generation, "changes": changes}

    def set_limit(self, platform: str, limit: int | None, window_seconds: float = 60.0) -> None:
        """Replace a platform's fixed window (all windows restart); ``limit=None`` turns
        limiting and the rate-limit headers off."""
        kind = self.platform(platform).limit_window
        limiter = None if limit is None else make_limiter(kind, int(limit), float(window_seconds))
        with self._lock:
            self._limiters[platform] = limiter

    def force(
        self,
        platform: str,
        status: int = 429,
        count: int = 1,
        retry_after_form: str | None = None,
        delay: float = 2,
        path_contains: str | None = None,
    ) -> None:
        """Answer the next ``count`` matching requests with ``status`` and the platform's
        error body.  ``retry_after_form`` (one of RETRY_AFTER_FORMS) picks the wait hint;
        by default a 429 carries the platform's own form and other statuses none.  Forced
        answers bypass (and do not consume) the rate limit; a 429 carries only its hint."""
        self.platform(platform)
        status = int(status)
        if not 400 <= status <= 599:
            raise ValueError("status must be 4xx or 5xx")
        if retry_after_form is not None and retry_after_form not in RETRY_AFTER_FORMS:
            raise ValueError(f"retry_after_form must be one of {RETRY_AFTER_FORMS}")
        if int(count) < 0 or float(delay) < 0:
            raise ValueError("count and delay must be >= 0")
        fault = ForcedFault(status, int(count), retry_after_form, float(delay), path_contains)
        with self._lock:
            self._faults[platform].append(fault)

    def force_shape(
        self, platform: str, shape: str, count: int = 1, path_contains: str | None = None
    ) -> None:
        """Answer the next ``count`` matching 200 JSON answers in another shape, as a
        misbehaving server or a gateway in front of it can (one of WRONG_SHAPES):
        ``bare-list`` serves the list an object documents bare, ``no-member`` an object
        without its list, ``html`` an HTML error page, ``empty`` no body at all; all with
        status 200."""
        self.platform(platform)
        if shape not in WRONG_SHAPES:
            raise ValueError(f"shape must be one of {WRONG_SHAPES}")
        if int(count) < 0:
            raise ValueError("count must be >= 0")
        with self._lock:
            self._shapes.setdefault(platform, []).append([shape, int(count), path_contains])

    def _take_shape(self, name: str, req: Request) -> str | None:
        with self._lock:
            for entry in self._shapes.get(name, []):
                shape, count, contains = entry
                if count > 0 and (contains is None or contains in req.raw_path):
                    entry[1] -= 1
                    return str(shape)
        return None

    def set_glitches(self, on: bool) -> None:
        """Turn the default transient wrong shapes (``GLITCHES``) on or off."""
        with self._lock:
            self._glitches = dict(GLITCHES) if on else {}
            self._glitch_seen.clear()

    def _take_glitch(self, platform: Platform, req: Request) -> str | None:
        """The shape a default glitch gives this 200 answer, if its turn has come."""
        pattern = self._glitches.get(platform.name)
        if pattern is None or not platform.is_read_only(req) or not pattern.search(req.path):
            return None
        with self._lock:
            seen = self._glitch_seen.get(platform.name, 0) + 1
            self._glitch_seen[platform.name] = seen
            if seen % GLITCH_EVERY != GLITCH_AT % GLITCH_EVERY:
                return None
            # In turn, starting with HTML or empty by platform, so that both are met.
            turn = seen // GLITCH_EVERY + list(GLITCHES).index(platform.name)
            shape = TRANSIENT_SHAPES[turn % len(TRANSIENT_SHAPES)]
            self.glitched.append((platform.name, req.path, shape))
            return shape

    def set_faults(
        self,
        rate: float,
        seed: int = 0,
        kinds: list[str] | tuple[str, ...] | None = None,
        slow_seconds: float = 3.0,
        wait_seconds: float = 1.0,
    ) -> None:
        """Inject faults into a seeded share ``rate`` of all platform requests from now on
        (see faults.py for the kinds); the counts start again from zero."""
        plan = FaultPlan(
            rate=float(rate),
            seed=int(seed),
            kinds=tuple(kinds) if kinds is not None else FAULT_KINDS,
            slow_seconds=float(slow_seconds),
            wait_seconds=float(wait_seconds),
        )
        self._injector = FaultInjector(plan)

    def fault_counts(self) -> dict[str, dict[str, int]]:
        """Faults injected so far, per platform and kind (only kinds that occurred)."""
        return self._injector.counts()

    def clear_forced(self, platform: str | None = None) -> None:
        with self._lock:
            for name in [platform] if platform else list(self._faults):
                self._faults[name] = []
                self._shapes[name] = []

    def request_log(self, platform: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            entries = list(self._log)
        if platform is not None:
            entries = [e for e in entries if e["platform"] == platform]
        return [dict(e) for e in entries]

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    def peak(self, platform: str, window: float = 1.0) -> dict[str, int]:
        """What the server saw of one platform since the log was last cleared: requests,
        the most that arrived within any rolling ``window`` seconds, and 429 answers."""
        entries = self.request_log(platform)
        return {
            "requests": len(entries),
            "peak": busiest_window((float(e["time"]) for e in entries), window),
            "rejected": sum(1 for e in entries if e.get("status") == 429),
        }

    # -- request processing (called from handler threads) ----------------------------

    def _platform_for(self, raw_path: str) -> Platform | None:
        best: Platform | None = None
        for platform in self._platforms.values():
            base = platform.base_path
            if (raw_path == base or raw_path.startswith(base + "/")) and (
                best is None or len(base) > len(best.base_path)
            ):
                best = platform
        return best

    def _take_fault(self, name: str, req: Request) -> ForcedFault | None:
        with self._lock:
            faults = self._faults[name]
            for fault in faults:
                if fault.matches(req):
                    fault.count -= 1
                    taken = ForcedFault(**vars(fault))
                    self._faults[name] = [f for f in faults if f.count > 0]
                    return taken
        return None

    def _serve(self, platform: Platform, req: Request) -> tuple[Response, dict[str, Any]]:
        with self._lock:
            limiter = self._limiters[platform.name]
        fault = self._take_fault(platform.name, req)
        if fault is not None:
            return self._forced(platform, req, fault, limiter), {"forced": True}
        injector = self._injector
        kind = injector.draw(platform.name, self._applicable_faults(platform, req))
        if kind in PRE_HANDLER_KINDS:
            injector.count(platform.name, kind)
            return self._injected(platform, req, kind, limiter), {"forced": False, "fault": kind}
        if kind == "slow":
            injector.count(platform.name, kind)
            time.sleep(injector.plan.slow_seconds)
        resp, extra = self._answer(platform, req, limiter)
        shape = self._take_shape(platform.name, req) if resp.status == 200 else None
        if shape is not None and _reshape(resp, shape):
            extra["shape"] = shape
        elif kind is None and resp.status == 200 and "json" in (resp.content_type or ""):
            glitch = self._take_glitch(platform, req)
            if glitch is not None and _reshape(resp, glitch):
                extra["shape"] = glitch
                extra["glitch"] = True
        if kind == "slow":
            extra["fault"] = kind
        elif (
            (kind == "truncated" and _truncate(resp))
            or (kind == "cut" and _cut(resp))
            or (kind == "utf8" and _utf8_cut(resp))
            or (kind == "eos" and platform.end_stream_early(req, resp))
        ):
            injector.count(platform.name, kind)
            extra["fault"] = kind
        return resp, extra

    def _applicable_faults(self, platform: Platform, req: Request) -> list[str]:
        kinds = [str(status) for status in platform.fault_statuses]
        kinds.append("drop")
        if platform.credential_can_expire(req):
            kinds.append("expired")
        if platform.is_read_only(req):
            kinds += ["truncated", "cut", "utf8", "eos", "slow"]
        return kinds

    def _injected(
        self, platform: Platform, req: Request, kind: str, limiter: FixedWindowLimiter | None
    ) -> Response:
        if kind == "drop":
            return Response(status=0, drop=True)
        if kind == "expired":
            return platform.expire_credential(req)
        wait = self._injector.plan.wait_seconds
        fault = ForcedFault(int(kind), 1, None, wait, None)
        return self._forced(platform, req, fault, limiter)

    def _answer(
        self, platform: Platform, req: Request, limiter: FixedWindowLimiter | None
    ) -> tuple[Response, dict[str, Any]]:
        identity = Identity(key="unidentified", ok=False)
        verdict: Verdict | None = None
        try:
            identity = platform.identify(req)
            verdict = limiter.hit(identity.key, req.now) if limiter is not None else None
            route, params, allowed = platform.router.match(req.method, split_path(req.raw_path))
            if verdict is not None and not verdict.allowed:
                resp = platform.over_limit(req, verdict)
            elif not identity.ok and not (route is not None and route.public):
                resp = platform.unauthorized(req)
            elif route is None:
                if allowed:
                    resp = platform.method_not_allowed(req, allowed)
                else:
                    resp = platform.not_found(req)
            else:
                req.params = params
                resp = route.handler(req)
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            resp = platform.internal_error(req, exc)
        if verdict is not None and platform.rate_limit_headers:
            for name, value in platform.limit_header_values(
                verdict.limit, verdict.remaining, verdict.reset_at, req.now
            ):
                if not resp.has_header(name):
                    resp.headers.append((name, value))
        platform.decorate(req, resp)
        return resp, {"forced": False, "credential_ok": identity.ok}

    def _forced(
        self,
        platform: Platform,
        req: Request,
        fault: ForcedFault,
        limiter: FixedWindowLimiter | None,
    ) -> Response:
        resp = platform.forced_error(req, fault.status)
        form = fault.retry_after_form
        if form is None:
            form = platform.limit_retry_after if fault.status == 429 else "none"
        limit = limiter.limit if limiter is not None else None
        if fault.status != 429 and limiter is not None and platform.rate_limit_headers:
            # a forced server error still reports the (unchanged) budget
            verdict = limiter.peek(platform.identify(req).key, req.now)
            resp.headers.extend(
                platform.limit_header_values(
                    verdict.limit, verdict.remaining, verdict.reset_at, req.now
                )
            )
        for name, value in platform.hint_headers(form, req.now, req.now + fault.delay, limit):
            resp.set_header(name, value)
        return resp

    def _log_entry(
        self,
        platform: Platform | None,
        method: str,
        path: str,
        raw_path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        now: float,
    ) -> dict[str, Any]:
        secret = platform.secret_headers if platform is not None else ("authorization",)
        return {
            "time": now,
            "platform": platform.name if platform is not None else None,
            "method": method,
            "path": path,
            "raw_path": raw_path,
            "query": {k: v[0] if len(v) == 1 else list(v) for k, v in query.items()},
            "request_headers": {
                k: ("<redacted>" if k in secret else v) for k, v in headers.items()
            },
        }

    def _append_log(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._log.append(entry)
            if len(self._log) > _MAX_LOG:
                del self._log[: len(self._log) - _MAX_LOG]

    # -- control endpoints -------------------------------------------------------------

    def _control(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes
    ) -> Response:
        try:
            payload = json.loads(body.decode("utf-8")) if body.strip() else {}
            if not isinstance(payload, dict):
                raise ValueError("the body must be a JSON object")
            route = (method, path.rstrip("/"))
            if route in (("GET", "/health"), ("HEAD", "/health")):
                return json_response(
                    200,
                    {
                        "status": "ok",
                        "seed": self.seed,
                        "scale": self.scale,
                        "latency_ms": self.latency_seconds * 1000.0,
                        "bulk": self.bulk,
                        "platforms": {n: p.base_path for n, p in self._platforms.items()},
                    },
                )
            if route == ("GET", "/requests"):
                platform = query.get("platform", [None])[0]
                entries = self.request_log(platform=platform)
                return json_response(200, {"count": len(entries), "requests": entries})
            if route == ("GET", "/peak"):
                platform = query.get("platform", [""])[0]
                window = float(query.get("window", ["1"])[0])
                return json_response(200, self.peak(platform, window))
            if route == ("POST", "/clear-log"):
                self.clear_log()
                return json_response(200, {"status": "ok"})
            if route == ("POST", "/force"):
                args = dict(payload)
                self.force(args.pop("platform"), **args)
                return json_response(200, {"status": "ok"})
            if route == ("POST", "/force-shape"):
                args = dict(payload)
                self.force_shape(args.pop("platform"), **args)
                return json_response(200, {"status": "ok"})
            if route == ("POST", "/clear-forced"):
                self.clear_forced(payload.get("platform"))
                return json_response(200, {"status": "ok"})
            if route == ("GET", "/faults"):
                plan = self._injector.plan
                return json_response(
                    200,
                    {
                        "rate": plan.rate,
                        "seed": plan.seed,
                        "kinds": list(plan.kinds),
                        "counts": self.fault_counts(),
                    },
                )
            if route == ("POST", "/faults"):
                self.set_faults(**payload)
                return json_response(200, {"status": "ok"})
            if route == ("POST", "/change"):
                return json_response(200, self.change())
            if route == ("POST", "/limits"):
                self.set_limit(
                    payload["platform"], payload["limit"], payload.get("window_seconds", 60.0)
                )
                return json_response(200, {"status": "ok"})
        except (KeyError, TypeError, ValueError) as exc:
            return json_response(400, {"error": f"{type(exc).__name__}: {exc}"})
        return json_response(404, {"error": f"no control endpoint {method} {path}"})


# --------------------------------------------------------------------------- CLI


def _truncate(resp: Response) -> bool:
    """Cut a 200 JSON body in half; whether it applied (a JSON object or array prefix is
    never valid JSON, so the client must notice)."""
    if resp.status != 200 or resp.stream is not None or "json" not in (resp.content_type or ""):
        return False
    if len(resp.body) < 2 or resp.body[:1] not in (b"{", b"["):
        return False
    resp.body = resp.body[: _split_point(resp.body)]
    return True


#: Shapes ``Sandbox.force_shape`` can give a 200 JSON answer.
WRONG_SHAPES = ("bare-list", "no-member", "html", "empty")
#: Wrong shapes a gateway gives once in a while, gone when asked again.
TRANSIENT_SHAPES = ("html", "empty")
#: On by default (``Sandbox(glitches=False)``, ``set_glitches``, ``--no-glitches`` turn them
#: off): on one read endpoint per platform, the GLITCH_AT-th matching 200 JSON answer, then
#: every GLITCH_EVERY-th, is a gateway's HTML error page or an empty body (in turn) with
#: status 200, once: a client reads it again and gets the real answer. Paths are relative
#: to the platform's prefix.
#: Each is a list read a few times a sync, so that a sync meets about one (each costs
#: the client a retry's wait).
GLITCHES: dict[str, re.Pattern[str]] = {
    "dexi": re.compile(r"^/runs/[^/]+/executions$"),
    "redivis": re.compile(r"^/(organizations|users)/[^/]+/datasets$"),
    "reinfer": re.compile(r"^/api/_private/sources/[^/]+/[^/]+/comments$"),
    "invision": re.compile(r"^/api/pub/v1/db/(tables|objects)/[^/]+/data$"),
    "datalinx": re.compile(r"^/pipelines/[^/]+/runs$"),
}
GLITCH_AT = 3
GLITCH_EVERY = 100
_HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>Bad Gateway</h1><p>The upstream server is not responding.</p></body></html>"
)


def _reshape(resp: Response, shape: str) -> bool:
    """Serve a JSON answer in ``shape``; whether it applied."""
    if "json" not in (resp.content_type or "") and shape in ("bare-list", "no-member"):
        return False
    if shape == "html":
        resp.body, resp.stream, resp.content_type = _HTML_PAGE, None, "text/html"
        return True
    if shape == "empty":
        resp.body, resp.stream = b"", None
        return True
    if resp.stream is not None:
        resp.body = b"".join(resp.stream)
        resp.stream = None
    try:
        body = json.loads(resp.body)
    except ValueError:
        return False
    if not isinstance(body, dict):
        return False
    lists = [name for name, value in body.items() if isinstance(value, list)]
    if not lists:
        return False
    if shape == "bare-list":
        payload: Any = body[lists[0]]
    else:
        payload = {k: v for k, v in body.items() if k not in lists}
    resp.body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    return True


def _utf8_cut(resp: Response) -> bool:
    """End a whole 200 JSON body one byte into a multi-byte UTF-8 character, well framed
    (its Content-Length says so); whether it applied (the body must hold such a character)."""
    if resp.status != 200 or resp.stream is not None or "json" not in (resp.content_type or ""):
        return False
    cut = _split_point(resp.body)
    if cut == 0 or resp.body[cut - 1] < 0xC0:
        cut = next((i + 1 for i, byte in enumerate(resp.body) if byte >= 0xC0), 0)
    if cut == 0 or cut >= len(resp.body):
        return False
    resp.body = resp.body[:cut]
    return True


def _split_point(body: bytes) -> int:
    """Where a fault cuts a body: about half way, inside a multi-byte UTF-8 character if
    one follows (one byte into it), as a network cut falls anywhere in the bytes."""
    half = len(body) // 2
    for position in range(half, len(body) - 1):
        if body[position] >= 0xC0:  # the lead byte of a multi-byte character
            return position + 1
    return half


def _cut(resp: Response) -> bool:
    """Make a 200 answer break off mid-body; whether it applied (an empty body cannot)."""
    if resp.status != 200:
        return False
    if resp.stream is not None:
        resp.stream = _first_part_then_cut(resp.stream)
        return True
    if len(resp.body) < 2:
        return False
    resp.stream = _first_part_then_cut([resp.body[: _split_point(resp.body)]])
    resp.body = b""
    return True


def _first_part_then_cut(chunks: Iterable[bytes]) -> Iterator[bytes]:
    for chunk in chunks:
        if chunk:
            yield chunk
            break
    raise CutConnection


def _parse_limit(text: str) -> tuple[str, int, float]:
    try:
        name, spec = text.split("=", 1)
        limit, window = spec.split("/", 1)
        return name.strip(), int(limit), float(window)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected PLATFORM=LIMIT/WINDOW_SECONDS, got {text!r}"
        ) from None


def _parse_bulk(text: str) -> tuple[str, tuple[int, int | None]]:
    try:
        name, spec = text.split("=", 1)
        size, _, per = spec.partition("/")
        return name.strip(), (int(size), int(per) if per else None)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected PLATFORM=N[/PER], got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tap-dataplatforms-sandbox",
        description="Serve the local emulator of the tap-dataplatforms APIs.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument(
        "--limit",
        action="append",
        default=[],
        type=_parse_limit,
        metavar="PLATFORM=LIMIT/WINDOW_SECONDS",
        help="override a platform's rate limit (repeatable)",
    )
    parser.add_argument("--verbose", action="store_true", help="access log on stderr")
    parser.add_argument(
        "--faults",
        type=float,
        default=0.0,
        metavar="RATE",
        help="inject faults into this share of requests, 0 to 1 (429, 5xx, drops, ...)",
    )
    parser.add_argument("--fault-seed", type=int, default=0, metavar="N")
    parser.add_argument(
        "--no-glitches",
        action="store_true",
        help="no transient HTML or empty answers (on by default on one endpoint a platform)",
    )
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="delay added to every platform request"
    )
    parser.add_argument(
        "--link-mbps",
        type=float,
        default=0.0,
        help="cap each connection's streamed body at this many megabits a second (0: no cap)",
    )
    parser.add_argument(
        "--bulk",
        action="append",
        default=[],
        type=_parse_bulk,
        metavar="PLATFORM=N[/PER]",
        help="add benchmark-sized data: dexi result rows (PER rows an execution), reinfer "
        "comments (PER a source), redivis table rows (PER datasets of three tables added "
        "to the demo organization)",
    )
    args = parser.parse_args(argv)

    limits = {name: (limit, window) for name, limit, window in args.limit}
    try:
        sandbox = Sandbox(
            seed=args.seed,
            scale=args.scale,
            limits=limits,
            verbose=args.verbose,
            latency_ms=args.latency_ms,
            link_mbps=args.link_mbps,
            bulk=dict(args.bulk),
            faults=args.faults,
            fault_seed=args.fault_seed,
            glitches=not args.no_glitches,
        )
        sandbox.start(host=args.host, port=args.port)
    except (ValueError, OSError) as exc:
        print(f"tap-dataplatforms-sandbox: {exc}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    print(f"sandbox listening on {sandbox.url}", flush=True)
    while not stop.wait(0.5):
        pass
    sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
