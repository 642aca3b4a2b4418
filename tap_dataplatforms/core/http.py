"""The one path every request takes: budget, send, wait hints, retries, errors.

``PlatformStream`` is the base of every platform's stream. A request first waits for
its platform budget, then goes out; a 429 (or a budget the server says is spent)
pauses the whole budget until the instant the server named, and is sent again
without counting as a failed try. Other transient failures (408, 5xx, timeouts,
dropped connections, bodies that are not the JSON promised) are retried with
exponential backoff and jitter, bounded by ``max_retries`` and by time. Errors
reach the user as one line, in the platform's own words, without secrets.

Requests come in three forms, all on that one path: a page of a listing (the SDK's
``request_records``; ``send_page`` for read-ahead; ``pages`` for a listing read outside
the stream's own records, by the same paginators), a one-off call (``call``, with
``idempotent=False`` for one with a side effect, sent once), and a body read as it
arrives (``stream_body``; one that breaks off is opened again after the retry wait, from
the start by ``read_streamed``, at the rows already delivered by ``read_resumed``).
Platforms differ only through hooks and declarations (``on_unauthorized``,
``stream_bodies``, ``validate_status``, ``error_keys``, ``error_message``,
``observe_response``), never by sending. A route a platform does not serve at all
(``RouteMissingError``) skips the stream, said once.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import random
import re
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast
from urllib.parse import urlsplit

import backoff
import msgspec
import requests
import urllib3
from pyrate_limiter import Rate
from requests.utils import resolve_proxies
from singer_sdk.authenticators import APIAuthenticatorBase
from singer_sdk.exceptions import (
    AbortedSyncFailedException,
    AbortedSyncPausedException,
    FatalAPIError,
    MaxRecordsLimitException,
    RetriableAPIError,
)
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.helpers.jsonpath import extract_jsonpath
from singer_sdk.pagination import BaseAPIPaginator, SinglePagePaginator

from tap_dataplatforms import __version__
from tap_dataplatforms.core import ratelimit
from tap_dataplatforms.core.budget import Budget, rates_per_second
from tap_dataplatforms.core.errors import (
    PartitionError,
    PlatformAuthError,
    PlatformUnavailableError,
    RateLimitedError,
    RouteMissingError,
)
from tap_dataplatforms.core.jsonbody import BrokenBody, WrongShape, describe_start
from tap_dataplatforms.core.progress import Progress
from tap_dataplatforms.core.records import EncodedRecords, boolean_text_fixer
from tap_dataplatforms.core.redact import redact, redact_url
from tap_dataplatforms.core.sdk import SDKStream, reset_progress_markers

if TYPE_CHECKING:
    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context

    from tap_dataplatforms.core.runtime import Runtime
    from tap_dataplatforms.core.settings import CommonSettings, PlatformSettings

USER_AGENT = f"tap-dataplatforms/{__version__}"
CONNECT_TIMEOUT_SECONDS = 30.0
#: Records counted into a partition's progress at a time (``get_records``).
PROGRESS_BATCH = 64
# How long one request may spend waiting out 429s before its partition fails.
RATE_LIMIT_PATIENCE_SECONDS = 30 * 60
MAX_RETRY_WAIT_SECONDS = 60.0
#: What the retry policy sends again (``PlatformStream._retrying``): dropped connections,
#: timeouts, 408, 5xx and unreadable 2xx bodies (RetriableAPIError).
TRANSIENT_ERRORS = (
    ConnectionResetError,
    RetriableAPIError,
    requests.exceptions.Timeout,
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)
#: What breaks a body read as it arrives (``PlatformStream.read_streamed``): it is read
#: again. BrokenBody: cut off short, even inside a multi-byte character, or not whole JSON;
#: a timeout: the body stalled.
BODY_BREAKS = (
    BrokenBody,
    ConnectionResetError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ConnectionError,
    requests.exceptions.ContentDecodingError,
    requests.exceptions.Timeout,
)
#: Retries of a request made before any record only to prove that a platform answers (the
#: connection check, a sample read for discovery): one, so a dead host fails fast.
CHECK_RETRIES = 1
_JSON_CACHE = "_tap_dataplatforms_json"
#: A records path of the documented form ``$.<member>[*]``.
_LIST_MEMBER = re.compile(r"^\$\.([A-Za-z_][A-Za-z0-9_]*)\[\*\]$")
_MSGSPEC_DECODE = msgspec.json.Decoder().decode
T = TypeVar("T")


def is_permanent(exc: Exception) -> bool:
    """A connection error that every retry would meet again: a certificate that fails
    verification (waiting out the backoff would only delay the same one-line error)."""
    if not isinstance(exc, requests.exceptions.SSLError):
        return False
    return "CERTIFICATE_VERIFY_FAILED" in str(exc)


#: A body read whole is read in pieces of this size (requests reads 10 KB at a time, a
#: call through urllib3's reader each).
BODY_PIECE = 1 << 20


def read_whole(response: requests.Response) -> bytes:
    """The body of a response sent with ``stream=True``, read in large pieces and kept as
    its ``content`` (as requests keeps a body it reads itself)."""
    # requests' own attributes: ``content`` reads with a fixed 10 KB piece and offers no
    # other size; what it keeps is set here as it would set it.
    if (
        response._content is False
        and not response._content_consumed
        and response.raw is not None
        and response.status_code != 0
    ):
        response._content = b"".join(response.iter_content(BODY_PIECE)) or b""
    return response.content


def response_json(response: requests.Response) -> Any:
    """The parsed JSON body of a response, parsed once."""
    cached = getattr(response, _JSON_CACHE, None)
    if cached is None:
        cached = (decode_json(response.content),)
        setattr(response, _JSON_CACHE, cached)
    return cached[0]


def decode_json(content: bytes | msgspec.Raw) -> Any:
    """JSON text decoded: by msgspec, about twice as fast as the standard library; what
    msgspec refuses that Python reads (NaN, floats out of range, a BOM) by Python, and
    truly invalid text raises ValueError as it always did."""
    try:
        return _MSGSPEC_DECODE(content)
    except msgspec.MsgspecError:
        return json.loads(bytes(content))


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    names: dict[type, str] = {str: "string", list: "array", dict: "object"}
    return names.get(type(value), type(value).__name__)


class PlatformStream(SDKStream):
    """Base of every stream: a platform's settings, budget and request discipline."""

    #: The settings block of the platform (``redivis``, ``dexi``, ...).
    platform: ClassVar[str]
    #: The platform's name in messages.
    platform_title: ClassVar[str]
    #: Whether a 2xx body must parse as JSON (a broken one is retried).
    expects_json: ClassVar[bool] = True
    #: Which of the platform's budgets requests of this stream spend.
    budget_kind: ClassVar[str] = "requests"
    #: Budgets each request takes a token from as well: a POST that only reads, where the
    #: platform's docs do not say whether it counts as a read or a write, takes both.
    extra_budget_kinds: ClassVar[tuple[str, ...]] = ()
    #: First retry wait; doubles per try up to ``MAX_RETRY_WAIT_SECONDS``.
    retry_base_seconds: ClassVar[float] = 1.0
    #: Statuses retried besides 5xx.
    retry_statuses: ClassVar[frozenset[int]] = frozenset({408})
    #: Statuses that condemn the credentials, and so the whole sync. A platform where a
    #: 403 can concern one resource only lists 401 and lets 403 fail that partition.
    auth_fatal_statuses: ClassVar[frozenset[int]] = frozenset({401, 403})
    #: Whether the stream's records are the whole of its source each run, so that a table
    #: version mirrors it (core/versions.py); off for a record per run the tap started.
    MIRRORED: ClassVar[bool] = True
    #: Full-table children keep no per-parent state (it would grow with every parent).
    state_partitioning_keys: ClassVar[list[str] | None] = []

    def log(self, message: str, *args: Any, level: int = logging.INFO, **kwargs: Any) -> None:
        # ``--test`` stops each stream at its first record by raising an abort, which the
        # SDK logs as "An unhandled error" at ERROR although the test succeeded.
        if level >= logging.ERROR and isinstance(sys.exc_info()[1], _ABORTS):
            level = logging.DEBUG
        super().log(message, *args, level=level, **kwargs)

    # -- settings and budget ------------------------------------------------------

    @property
    def runtime(self) -> Runtime:
        return cast("Runtime", self.tap.runtime)  # type: ignore[attr-defined]

    @property
    def settings(self) -> PlatformSettings:
        """The platform block, defaults applied (each platform narrows the type)."""
        return self.runtime.settings.platform(self.platform)

    @property
    def common(self) -> CommonSettings:
        """The settings every platform shares."""
        return self.runtime.settings.common

    @property
    def url_base(self) -> str:
        return self.settings.api_url.rstrip("/")

    def credential(self) -> tuple[str, ...]:
        """What identifies the account whose budget requests spend."""
        return tuple(
            str(getattr(self.settings, name) or "")
            for name in self.runtime.secret_names(self.platform)
        )

    def budget_rates(self, kind: str | None = None) -> list[Rate]:
        """The rates of the platform's budget ``kind`` (default: this stream's own)."""
        return rates_per_second(self.settings.max_requests_per_second)

    def budget_of(self, kind: str) -> Budget:
        return self.runtime.budgets.get(
            self.platform, self.credential(), self.budget_rates(kind), kind
        )

    @property
    def budget(self) -> Budget:
        return self.budget_of(self.budget_kind)

    @property
    def budgets(self) -> list[Budget]:
        """Every budget a request of this stream spends, its own first."""
        kinds = dict.fromkeys((self.budget_kind, *self.extra_budget_kinds))
        return [self.budget_of(kind) for kind in kinds]

    @property
    def user_agent(self) -> str:
        return USER_AGENT

    @property
    def requests_session(self) -> requests.Session:
        session = super().requests_session
        if not self.common.verify_tls:
            session.verify = False
            warn_unverified_tls(self.logger)
        return session

    @property
    def http_headers(self) -> dict[str, Any]:
        return {"User-Agent": USER_AGENT, "Accept": "application/json"}

    @property
    def request_timeout(self) -> tuple[float, float]:
        return (CONNECT_TIMEOUT_SECONDS, self.common.request_timeout_seconds)

    # -- errors ---------------------------------------------------------------------

    #: Whether the start of an error body that is not JSON says something (off for a
    #: platform whose non-JSON errors are a proxy's page, which adds nothing).
    error_text_detail: ClassVar[bool] = True

    def error_detail(self, response: requests.Response) -> str | None:
        """The platform's own message from an error body: from a JSON object through
        ``error_message``, else the start of the text (``error_text_detail``)."""
        try:
            body = response_json(response)
        except ValueError:
            text = response.text.strip() if self.error_text_detail else ""
            return text[:300] or None
        return self.error_message(body) if isinstance(body, dict) else None

    #: Where a JSON error object holds the message, the first present (not blank) wins.
    error_keys: ClassVar[tuple[str, ...]] = ("message", "error_description", "error", "detail")

    def error_message(self, body: dict[str, Any]) -> str | None:
        """The message of a JSON error object; a platform of another shape overrides it."""
        for key in self.error_keys:
            value = body.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
        return None

    def describe_failure(self, response: requests.Response) -> str:
        request = response.request
        method = request.method if request is not None else "GET"
        url = redact_url(response.url or (request.url if request is not None else "") or "")
        text = f"{self.platform_title}: HTTP {response.status_code}"
        if response.reason:
            text += f" {response.reason}"
        text += f" on {method} {url}"
        detail = self.error_detail(response)
        if detail:
            text += f": {detail}"
        return redact(text)

    def response_error_message(self, response: requests.Response) -> str:
        return self.describe_failure(response)

    def validate_response(self, response: requests.Response) -> None:
        self.validate_status(response)
        self.validate_body(response)

    def validate_status(self, response: requests.Response) -> None:
        """Turn an error status into the exception that says what to do about it."""
        status = response.status_code
        if status == 429:
            raise RateLimitedError(self.describe_failure(response), response)
        if status >= 500 or status in self.retry_statuses:
            raise RetriableAPIError(self.describe_failure(response), response)
        if status in self.auth_fatal_statuses:
            raise PlatformAuthError(self.describe_failure(response))
        if status >= 400:
            raise PartitionError(self.describe_failure(response), status)

    def validate_body(self, response: requests.Response) -> None:
        """A 2xx whose JSON does not parse (a truncated or HTML body) is retried."""
        if self.expects_json:
            try:
                response_json(response)
            except ValueError as exc:
                raise self.unreadable(response, exc) from exc

    def unreadable(self, response: requests.Response, exc: ValueError) -> RetriableAPIError:
        """The error of a 2xx whose JSON does not parse: it is fetched again."""
        found = describe_start(response.content[:256])
        detail = "cut off or malformed" if found.startswith(("a JSON", "JSON")) else found
        message = f"{self.where(response)}: unreadable JSON body ({detail})"
        return RetriableAPIError(message, response)

    # -- the three operations -------------------------------------------------------
    #
    # Every request goes through ``send_prepared`` (one try: budget, 429 waits, errors)
    # inside ``_retrying`` (the one backoff policy: transient failures, Retry-After):
    #
    # - a page of a listing: the SDK's ``request_records`` sends it through
    #   ``request_decorator`` (read-ahead: ``send_page``; another route's listing, by the
    #   same paginators: ``pages``);
    # - a one-off call: ``call`` (``idempotent=False`` for a call with a side effect);
    # - a body read as it arrives (JSON parsed as a stream, Arrow, a file):
    #   ``stream_body`` opens it, ``read_streamed`` (from the start) or ``read_resumed``
    #   (at an offset) opens it again when it breaks off.

    def call(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        context: Context | None = None,
        idempotent: bool = True,
        retries: int | None = None,
    ) -> requests.Response:
        """A one-off request outside pagination (a lookup, a POST that opens something).

        ``idempotent=False``: the call has a side effect (it starts a run), so it is sent
        once and never retried here; an answer that is lost is for the caller to look
        for (``core.once.call_once``). ``retries``: how many times a transient failure
        is sent again, the ``max_retries`` setting unless the caller has a reason.
        """
        tries = self._tries(idempotent, retries)
        return cast(
            "requests.Response",
            self._sent(method, url, params, json_body, context, stream=False, tries=tries),
        )

    def call_read(
        self,
        method: str,
        url: str,
        read: Callable[[requests.Response], T],
        *,
        params: dict[str, Any] | None = None,
        context: Context | None = None,
    ) -> T:
        """``call``, the answer read by ``read`` in place of the usual JSON check (a
        lighter parse of a large body): a 2xx body it cannot read (``ValueError``) is
        fetched again, as every unreadable body is."""
        tries = self._tries(True, None)
        answer = self._sent(method, url, params, None, context, stream=True, tries=tries, read=read)
        return cast("T", answer)

    def stream_body(
        self,
        url: str,
        params: dict[str, Any] | None = None,
        *,
        context: Context | None = None,
        retries: int | None = None,
    ) -> requests.Response:
        """``GET`` a body to be read as it arrives (a large JSON body parsed as a stream,
        Arrow, a file): its status is checked and retried as every request's, its body
        is left unread for the caller, who closes the response."""
        tries = self._tries(True, retries)
        response = self._sent("GET", url, params, None, context, stream=True, tries=tries)
        return cast("requests.Response", response)

    def read_streamed(
        self,
        open_body: Callable[[], requests.Response],
        read: Callable[[requests.Response, int], Iterable[T]],
        *,
        what: str,
        retries: int | None = None,
        size: Callable[[T], int] | None = None,
    ) -> Generator[T, None, None]:
        """The items of a body read as it arrives (``open_body`` opens it, through
        ``stream_body``), for a body that can only be read from its start: one that
        breaks off is opened again from the start and ``read(response, skip)`` passes
        over the ``skip`` items already delivered (a body without keys read twice must
        not deliver a row twice). ``read_resumed`` is the rest of the rules."""
        return self.read_resumed(
            lambda delivered: open_body(), read, what=what, retries=retries, size=size
        )

    def read_resumed(
        self,
        open_at: Callable[[int], requests.Response],
        read: Callable[[requests.Response, int], Iterable[T]],
        *,
        what: str,
        retries: int | None = None,
        size: Callable[[T], int] | None = None,
        renewed: Callable[[PartitionError], bool] | None = None,
    ) -> Generator[T, None, None]:
        """The items of a body read as it arrives, opened again where it broke off.

        ``open_at(delivered)`` opens the body (through ``stream_body``) given how many
        items were delivered already: a platform that can resume at an offset asks for
        the body from there, one that cannot opens it from the start. ``read(response,
        delivered)`` reads one opened body, passing over (or numbering from) those
        items. A body that breaks off (``BODY_BREAKS``: cut, truncated, stalled, not
        whole) is opened again after the retry policy's wait, counted and warned as
        every retry, up to the retry limit (``retries``, else ``max_retries``); a read is
        complete only when ``read`` returns. A whole answer of another shape than
        documented (``WrongShape``) fails at once. ``size(item)``: how many items one
        yielded value counts for (a batch of rows). ``renewed(error)``: when opening
        fails with a ``PartitionError`` (an expired read session's 404), the platform's
        hook renews what the body is read from and says whether to open it again (not
        counted as a break). ``what`` names the body in messages.
        """
        tries = self._tries(True, retries)
        delivered, reads = 0, 1

        def opened() -> requests.Response:
            while True:
                try:
                    return open_at(delivered)
                except PartitionError as exc:
                    if renewed is None or not renewed(exc):
                        raise

        response = opened()
        try:
            while True:
                try:
                    for item in read(response, delivered):
                        delivered += 1 if size is None else size(item)
                        yield item
                    return
                except WrongShape as exc:
                    raise PartitionError(str(exc)) from None
                except BODY_BREAKS as exc:
                    response.close()
                    if reads >= tries:
                        if isinstance(exc, BrokenBody):
                            raise PartitionError(
                                f"{what} kept breaking off: {exc} (gave up after {reads} reads)"
                            ) from None
                        raise
                    wait = self._retry_wait(reads, exc)
                    reads += 1
                    self._count_retry()
                    self.logger.warning(
                        "%s broke off after %d rows (%s); reading it again after %.1fs",
                        what,
                        delivered,
                        redact(str(exc) or type(exc).__name__),
                        wait,
                    )
                    self.budget.clock.sleep(wait)
                    response = opened()
        finally:
            response.close()

    def pages(
        self,
        url: str,
        params: Callable[[Any], dict[str, Any]],
        *,
        paginator: BaseAPIPaginator[Any] | None = None,
        context: Context | None = None,
    ) -> Iterator[requests.Response]:
        """The pages of a listing read outside the stream's own records (a lookup that
        pages, another route listed inside a partition), each a ``call``, followed by
        ``paginator`` (else the stream's own) as the SDK's ``request_records`` follows it:
        ``params(token)`` are the query parameters of the page at ``token``. The paginator
        says where the listing ends (and fails a cursor that does not advance); a rule
        of the caller's own (stop below a watermark, at a page that repeats) is leaving
        the loop."""
        if paginator is None:
            paginator = self.get_new_paginator() or SinglePagePaginator()
        while not paginator.finished:
            token = paginator.current_value
            response = self.call("GET", url, params=params(token), context=context)
            yield response
            paginator.advance(response)

    def send_page(
        self, prepared_request: requests.PreparedRequest, context: Context | None
    ) -> requests.Response:
        """One page of a listing, sent as the SDK's ``request_records`` sends it (for
        read-ahead, which sends a partition's pages before its sync asks for them)."""
        return cast(
            "requests.Response",
            self.request_decorator(self.send_prepared)(prepared_request, context),
        )

    def _tries(self, idempotent: bool, retries: int | None) -> int:
        if not idempotent:
            return 1
        return self.backoff_max_tries() if retries is None else retries + 1

    def _sent(
        self,
        method: str,
        url: str,
        params: dict[str, Any] | None,
        json_body: Any,
        context: Context | None,
        *,
        stream: bool,
        tries: int,
        read: Callable[[requests.Response], Any] | None = None,
    ) -> Any:
        """The request, under the retry policy; with ``read``, what it reads of the answer
        (a body it cannot read is fetched again)."""
        prepared = self.build_prepared_request(
            method=method, url=url, params=params or {}, headers=self.http_headers, json=json_body
        )

        def attempt() -> Any:
            response = self.send_prepared(prepared, context, stream=stream)
            if read is None:
                return response
            read_whole(response)
            try:
                return read(response)
            except ValueError as exc:
                raise self.unreadable(response, exc) from exc

        return self._retrying(attempt, tries)()

    # -- one try --------------------------------------------------------------------

    #: Whether every body of the stream is read as it arrives, never whole (a table that
    #: is one body, even when a connection check asks for it).
    stream_bodies: ClassVar[bool] = False

    def send_prepared(
        self,
        prepared_request: requests.PreparedRequest,
        context: Context | None,
        *,
        stream: bool = False,
    ) -> requests.Response:
        """Send once the budget allows; wait out 429s; raise on errors.

        With ``stream`` (or ``stream_bodies``) the body is left unread for the caller.
        A 401 is sent once more if ``on_unauthorized`` renewed the credentials.
        """
        try:
            return self._send_once(prepared_request, context, stream or self.stream_bodies)
        except PlatformAuthError as exc:
            if not self.on_unauthorized(prepared_request, exc):
                raise
            return self._send_once(prepared_request, context, stream or self.stream_bodies)

    def authenticate(self, prepared_request: requests.PreparedRequest) -> requests.PreparedRequest:
        """The request with the stream's credentials: an SDK authenticator that only sets
        headers (no query parameters, no override) sets them here directly, without the
        SDK's parse of the URL for parameters it would not add; any other is called."""
        auth = self.authenticator
        if (
            isinstance(auth, APIAuthenticatorBase)
            and type(auth).__call__ is APIAuthenticatorBase.__call__
            and type(auth).authenticate_request is APIAuthenticatorBase.authenticate_request
            and not auth.auth_params
        ):
            prepared_request.headers.update(auth.auth_headers)
            return prepared_request
        return cast("requests.PreparedRequest", auth(prepared_request))

    def proxies_for(self, url: str | None) -> dict[str, str]:
        """The proxies for a request to ``url``, from the session and (unless it ignores
        it) the environment, worked out once per scheme and host: requests would read
        every proxy variable of the environment again for each request."""
        scheme, host = urlsplit(url or "")[:2]
        cache: dict[tuple[str, str], dict[str, str]] = self.__dict__.setdefault("_proxies", {})
        found = cache.get((scheme, host))
        if found is None:
            session = self.requests_session
            probe = requests.PreparedRequest()
            probe.url = f"{scheme}://{host}/"
            found = resolve_proxies(probe, dict(session.proxies), session.trust_env)
            cache[(scheme, host)] = found
        return found

    def on_unauthorized(
        self, prepared_request: requests.PreparedRequest, error: PlatformAuthError
    ) -> bool:
        """Hook for a platform whose credentials can be renewed (a login token): renew
        them and say whether the refused request is sent once more."""
        return False

    def _send_once(
        self, prepared_request: requests.PreparedRequest, context: Context | None, stream: bool
    ) -> requests.Response:
        budget, *also = self.budgets
        patience_deadline = time.monotonic() + RATE_LIMIT_PATIENCE_SECONDS
        rate_limited = 0
        while True:
            waited = sum(other.acquire() for other in also)
            waited += budget.acquire(in_flight=True)
            if waited:
                self.runtime.count_stream(self.name, "budget_wait_seconds", waited)
            try:
                request = self.authenticate(prepared_request)
                response = self.requests_session.send(
                    request,
                    timeout=self.request_timeout,
                    allow_redirects=self.allow_redirects,
                    stream=stream,
                    proxies=self.proxies_for(request.url),
                )
                received_at = budget.clock.time()
                # What the server says is left, less what requests still in flight (the
                # read-ahead workers') will spend; at nothing left the budget waits.
                window = (
                    ratelimit.remaining_window(response.headers, received_at=received_at)
                    if response.status_code != 429
                    else None
                )
                if window is not None and budget.observe_remaining(*window):
                    budget.pause_until(window[1], reason="X-RateLimit-Remaining is 0")
            finally:
                budget.done()
            self.log_request_duration(
                endpoint=self.metric_endpoint(response),
                response=response,
                context=context,
                extra_tags=self.request_metric_tags(response),
            )
            self.runtime.note_response(self.platform, response)
            self.runtime.count_stream(self.name, "requests")
            if response.status_code != 429:
                self.validate_status(response)
                if not stream:
                    self.validate_body(response)
                self.observe_response(response)
                return response
            rate_limited += 1
            self.runtime.count_rate_limited(self.platform)
            self.runtime.count_stream(self.name, "http_429")
            wait = self._rate_limit_wait(response, received_at, rate_limited)
            if time.monotonic() + wait > patience_deadline:
                self.validate_response(response)  # raises RateLimitedError
            # Which of the budgets the server counted is not said: hold them all.
            for held in (budget, *also):
                held.pause_until(received_at + wait, reason=f"HTTP 429 on {self.path}")

    def _rate_limit_wait(
        self, response: requests.Response, received_at: float, attempt: int
    ) -> float:
        """Seconds to hold the budget after a 429: what the server asked, plus a little."""
        hint = ratelimit.wait_hint(response.headers, received_at=received_at)
        wait = None if hint is None else ratelimit.clamp_wait(hint.instant, now=received_at)
        if wait is None:
            return self._expo_wait(attempt)
        # Jitter only ever lengthens a server-given wait, so parallel partitions do not
        # all wake at the same instant and none goes back early.
        return wait + random.uniform(0, min(0.05 * wait, 0.25))

    def _expo_wait(self, attempt: int) -> float:
        ceiling = min(self.retry_base_seconds * 2 ** (attempt - 1), MAX_RETRY_WAIT_SECONDS)
        return random.uniform(ceiling / 2, ceiling)

    def observe_response(self, response: requests.Response) -> None:
        """Hook for what a platform reads off every good response (totals, timings)."""

    def metric_endpoint(self, response: requests.Response) -> str:
        """The endpoint the request-duration metric of a response names: the stream's
        path, unless the stream calls several routes."""
        return self.path or ""

    def request_metric_tags(self, response: requests.Response) -> dict[str, Any] | None:
        """Extra tags on the request-duration metric of every response, such as the
        server's own processing time next to the client-side duration."""
        return None

    # -- retries ------------------------------------------------------------------

    def backoff_max_tries(self) -> int:
        return self.common.max_retries + 1

    def _retry_waits(self) -> Generator[float, Any, None]:
        """The waits of the backoff policy (``_retry_wait``), as ``backoff`` asks them."""
        attempt = 0
        exception = yield 0.0  # primed by backoff
        while True:
            attempt += 1
            exception = yield self._retry_wait(attempt, exception)

    def _retry_wait(self, attempt: int, exception: BaseException | None) -> float:
        """Seconds before try ``attempt + 1``: exponential backoff with jitter; a server's
        ``Retry-After`` on a 5xx wins."""
        response = getattr(exception, "response", None)
        if response is not None:
            now = time.time()
            hint = ratelimit.retry_after(response.headers, received_at=now)
            hinted = None if hint is None else ratelimit.clamp_wait(hint.instant, now=now)
            if hinted is not None:
                return hinted
        return self._expo_wait(attempt)

    def _count_retry(self) -> None:
        self.runtime.count_retry(self.platform)
        self.runtime.count_stream(self.name, "retries")

    def backoff_handler(self, details: Any) -> None:
        exc = details.get("exception")
        reason = redact(str(exc)) if exc is not None else "unknown error"
        self._count_retry()
        self.logger.warning(
            "%s: retry %d after %.1fs: %s",
            self.platform_title,
            details.get("tries", 0),
            details.get("wait", 0.0),
            reason,
        )

    def request_decorator(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """The retry policy of every page the SDK's ``request_records`` sends."""
        return self._retrying(func)

    def _retrying(
        self, func: Callable[..., Any], tries: int | Callable[[], int] | None = None
    ) -> Callable[..., Any]:
        """``func`` under the one retry policy of every request: transient failures
        (``TRANSIENT_ERRORS``) sent again after ``_retry_waits``, up to ``tries``
        tries (``backoff_max_tries``) and an hour; a certificate that fails is final."""
        return cast(
            "Callable[..., Any]",
            backoff.on_exception(
                self._retry_waits,
                TRANSIENT_ERRORS,
                max_tries=self.backoff_max_tries if tries is None else tries,
                max_time=lambda: 3600,
                jitter=None,
                giveup=is_permanent,
                on_backoff=self.backoff_handler,
                logger=None,
            )(func),
        )

    # -- records ------------------------------------------------------------------

    def replication_start(self, context: Context | None) -> datetime.datetime | None:
        """Where an incremental partition starts: its bookmark (or ``start_date``)
        moved back by ``lookback_seconds``, for data that arrives late."""
        start = self.get_starting_timestamp(context)
        if start is None:
            return None
        if start.tzinfo is None:
            start = start.replace(tzinfo=datetime.timezone.utc)
        lookback = self.common.lookback_seconds
        return start - datetime.timedelta(seconds=lookback)

    @property
    def emit_activate_version_messages(self) -> bool:
        # Never the SDK's message at the start of each partition: the tap versions
        # full-table streams itself, one ACTIVATE_VERSION after all partitions
        # (core/versions.py, TapDataPlatforms.sync_all).
        return False

    def where(self, response: requests.Response) -> str:
        """``<Platform>: <METHOD> <url>``, the start of a message about one answer."""
        request = response.request
        method = request.method if request is not None else "GET"
        url = redact_url(response.url or (request.url if request is not None else "") or "")
        return f"{self.platform_title}: {method} {url}"

    def documented_list(
        self, response: requests.Response, member: str, body: Any = None
    ) -> list[Any]:
        """The list a documented ``{member: [...], ...}`` answer holds. Valid JSON of
        another shape (a bare list, an object without ``member``) is an error naming the
        platform, the endpoint and what came, never an empty page."""
        if body is None:
            body = response_json(response)
        expected = f"expected a JSON object with '{member}'"
        if not isinstance(body, dict):
            raise PartitionError(
                f"{self.where(response)}: {expected}, found a JSON {json_type(body)}"
            )
        if member not in body:
            keys = ", ".join(sorted(map(str, body))[:8]) or "none"
            raise PartitionError(
                f"{self.where(response)}: {expected}, found an object without it (keys: {keys})"
            )
        value = body[member]
        if value is None:
            return []
        if not isinstance(value, list):
            raise PartitionError(
                f"{self.where(response)}: {expected} holding a list, "
                f"found a JSON {json_type(value)}"
            )
        return value

    def parse_response(self, response: requests.Response) -> Iterable[dict[str, Any]]:
        body = response_json(response)
        member = _LIST_MEMBER.match(self.records_jsonpath or "")
        if member is not None:
            self.documented_list(response, member.group(1), body)
        for record in extract_jsonpath(self.records_jsonpath, input=body):
            if not isinstance(record, dict):
                # A list that is an object, or holds bare values: not records this stream
                # can deliver, and guessing would lose or invent fields.
                raise PartitionError(
                    f"{self.platform_title}: the answer of {redact_url(response.url)} holds "
                    f"a JSON {json_type(record)} where a record (an object) belongs"
                )
            yield record

    def partition_label(self, context: Context | None) -> str:
        if not context:
            return self.name
        inner = ", ".join(f"{k}={v}" for k, v in context.items())
        return f"{self.name} [{inner}]"

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        """Records of one partition; a permanent failure there is recorded, not raised,
        and a route the platform does not serve skips the stream (``skip_route``)."""
        if self.route_missing:
            return
        progress = Progress(self.partition_label(context), self.logger)
        self._progress = progress
        fix = self._boolean_text
        # Counted PROGRESS_BATCH records at a time: a progress line comes at most every
        # ten seconds, and reading the clock for each record cost more than the count.
        uncounted = 0
        try:
            for record in self.request_records(context):
                if type(record) is EncodedRecords:  # several records, encoded already
                    uncounted += len(record)
                else:
                    uncounted += 1
                    if fix is not None:
                        fix(record)
                if uncounted >= PROGRESS_BATCH:
                    progress.advance(uncounted)
                    uncounted = 0
                yield record
        except PlatformAuthError:
            raise
        except RouteMissingError as exc:
            self.skip_route(exc)
        except (FatalAPIError, *TRANSIENT_ERRORS) as exc:
            self._fail_partition(context, exc)
        finally:
            if uncounted:
                progress.advance(uncounted)

    #: Whether the platform answered that it does not serve the stream's route.
    route_missing = False

    def skip_route(self, exc: RouteMissingError) -> None:
        """The platform does not serve the stream's route: said once, and the stream's
        remaining partitions are skipped."""
        self.route_missing = True
        self.runtime.warn_once(
            f"{self.platform_title} has no route for {self.name} here ({exc}); {self.name} skipped"
        )

    @cached_property
    def _boolean_text(self) -> Callable[[dict[str, Any]], None] | None:
        # Streams that conform their own records (core.records) read boolean text there.
        if self.TYPE_CONFORMANCE_LEVEL == TypeConformanceLevel.NONE:
            return None
        return boolean_text_fixer(self.schema)

    def _fail_partition(self, context: Context | None, exc: BaseException) -> None:
        message = redact(str(exc) or type(exc).__name__)
        if isinstance(exc, RetriableAPIError | requests.exceptions.RequestException):
            message = f"{message} (gave up after retries)"
        self.runtime.record_failure(self.partition_label(context), message, streams=[self.name])
        self.logger.error(
            "Partition failed, continuing with the rest: %s: %s",
            self.partition_label(context),
            message,
        )
        # The partition's bookmark must not move past records it never delivered.
        state = self.get_context_state(context)
        reset_progress_markers(state)

    @property
    def progress(self) -> Progress | None:
        return getattr(self, "_progress", None)


_ABORTS = (AbortedSyncFailedException, AbortedSyncPausedException, MaxRecordsLimitException)

_TLS_WARNING = threading.Lock()
_tls_warned = False


def warn_unverified_tls(logger: logging.Logger) -> None:
    """Say once per run that certificates go unchecked (``verify_tls: false``), instead of
    urllib3's warning on every request."""
    global _tls_warned
    with _TLS_WARNING:
        if _tls_warned:
            return
        _tls_warned = True
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    logger.warning(
        "verify_tls is false: TLS certificates are not verified, so anyone on the network "
        "path could read the credentials and answer in the platforms' place"
    )


def _connection_reason(exc: requests.exceptions.RequestException) -> str:
    text = str(exc)
    if isinstance(exc, requests.exceptions.Timeout):
        return "timed out"
    for needle, reason in (
        ("Name or service not known", "host name not found"),
        ("NameResolutionError", "host name not found"),
        ("nodename nor servname", "host name not found"),
        ("Connection refused", "connection refused"),
        ("CERTIFICATE_VERIFY_FAILED", "TLS certificate verification failed"),
        ("SSLError", "TLS error"),
    ):
        if needle in text:
            return reason
    return type(exc).__name__


def check_connection(
    stream: PlatformStream, path: str, params: dict[str, Any] | None = None
) -> None:
    """One request through the full discipline with a single retry, before any record.

    Bad credentials and unreachable hosts fail here with one line naming the platform;
    a missing resource is left for the sync to report as a partition failure.
    """
    try:
        with reaching(stream):
            stream.call("GET", stream.url_base + path, params=params, retries=CHECK_RETRIES).close()
    except PartitionError as exc:
        if exc.status in (401, 403):  # the very first request: the credentials are at fault
            raise PlatformAuthError(str(exc)) from None
        stream.logger.warning("Connection check: %s", exc)


def connection_check(
    stream_name: str, path: str, params: dict[str, Any] | None = None
) -> Callable[[Tap], None]:
    """A platform's connection check that is one cheap authenticated read: ``path``
    through the stream ``stream_name``, as ``check_connection`` sends it."""

    def check(tap: Tap) -> None:
        stream = tap.streams[stream_name]
        assert isinstance(stream, PlatformStream)
        check_connection(stream, path, params)

    return check


@contextlib.contextmanager
def reaching(stream: PlatformStream) -> Iterator[None]:
    """Requests made outside a partition (checks, discovery): a host that cannot be
    reached, or keeps failing after the retries, ends the run with one line."""
    try:
        yield
    except requests.exceptions.RequestException as exc:
        raise PlatformUnavailableError(
            f"{stream.platform_title}: cannot reach {redact_url(stream.url_base)}: "
            f"{_connection_reason(exc)}"
        ) from None
    except RetriableAPIError as exc:
        raise PlatformUnavailableError(f"{exc} (still failing after retries)") from None
