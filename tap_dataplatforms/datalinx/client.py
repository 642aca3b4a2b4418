"""The Datalinx base stream: credentials, the envelope, page numbers, workspace scoping."""

from __future__ import annotations

import contextlib
import copy
import re
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, cast
from urllib.parse import quote

from pyrate_limiter import Rate
from singer_sdk.pagination import PageNumberPaginator

from tap_dataplatforms.core import ratelimit
from tap_dataplatforms.core.budget import rates_per_second
from tap_dataplatforms.core.errors import PartitionError, PlatformAuthError, RouteMissingError
from tap_dataplatforms.core.http import PlatformStream, response_json
from tap_dataplatforms.core.naming import NamesById
from tap_dataplatforms.core.timestamps import parse_datetime, to_rfc3339
from tap_dataplatforms.datalinx.auth import (
    LOGIN_PATH,
    ApiKeyAuth,
    JWTLogin,
    TokenRejectedError,
    bearer_of,
    is_login,
)
from tap_dataplatforms.datalinx.settings import DatalinxSettings

if TYPE_CHECKING:
    import requests
    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context
    from singer_sdk.streams.rest import HTTPRequest, PageContext

    from tap_dataplatforms.core.runtime import Runtime

#: Requested page size; the maximum is not documented, the echoed one is trusted.
PAGE_SIZE = 100
#: The smallest documented burst (Free plan).
DOCUMENTED_BURST = 10
_SECRET_WORDS = frozenset(
    {"password", "passwd", "pwd", "secret", "token", "key", "apikey", "credential", "credentials"}
)
_WORD = re.compile(r"[a-z0-9]+")


def looks_secret(name: str) -> bool:
    """A configuration key that probably holds a credential (``password``, ``api_token``)."""
    lowered = name.lower()
    words = set(_WORD.findall(lowered.replace("apikey", "api_key")))
    return bool(words & _SECRET_WORDS) or any(
        word in lowered for word in ("password", "secret", "token")
    )


def without_secrets(value: Any) -> Any:
    """Connection settings with every credential-looking key dropped (pitfall 9)."""
    if isinstance(value, dict):
        return {k: without_secrets(v) for k, v in value.items() if not looks_secret(str(k))}
    if isinstance(value, list):
        return [without_secrets(v) for v in value]
    return value


def header_value(text: str) -> str | bytes:
    """A header value as sent: names beyond Latin-1 go out as UTF-8 bytes."""
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")
    return text


class EnvelopePaginator(PageNumberPaginator):
    """``page`` until ``pagination.page`` reaches ``total_pages``.

    An empty ``data`` or a missing ``pagination`` object also ends the list: the
    endpoint then returned everything at once.
    """

    def __init__(self) -> None:
        super().__init__(1)

    def has_more(self, response: requests.Response) -> bool:
        body = response_json(response)
        pagination = body.get("pagination") if isinstance(body, dict) else None
        if not isinstance(pagination, dict) or not body.get("data"):
            return False
        try:
            total = int(pagination.get("total_pages") or 0)
        except (TypeError, ValueError):
            return False
        # The page asked for, not the one echoed: a server that ignored `page` cannot
        # keep the reader on page 1 forever.
        return int(self.current_value) < total


@dataclass
class _Session:
    """What all Datalinx streams of one tap run share."""

    authenticator: ApiKeyAuth | JWTLogin
    admin_denied: bool = False


_SESSIONS: weakref.WeakKeyDictionary[Runtime, _Session] = weakref.WeakKeyDictionary()
_SESSIONS_LOCK = threading.Lock()


class DatalinxStream(PlatformStream):
    platform = "datalinx"
    platform_title = "Datalinx"
    records_jsonpath = "$.data[*]"
    #: A 403 concerns the route (administration needs ``org.admin``), not the credentials.
    auth_fatal_statuses = frozenset({401})
    #: Whether requests carry ``X-Workspace`` (taken from the context).
    workspace_scoped: ClassVar[bool] = False
    #: The resource's schema when the instance publishes none (``schemas.py``).
    written_schema: ClassVar[dict[str, Any]]

    def __init__(self, tap: Tap, schema: dict[str, Any] | None = None) -> None:
        # Discovery passes the schema the instance's OpenAPI document gives, if any.
        super().__init__(tap, schema=schema or copy.deepcopy(self.written_schema))

    # -- credentials -------------------------------------------------------------------

    @property
    def settings(self) -> DatalinxSettings:
        return self.runtime.settings.of(DatalinxSettings, self.platform)

    @property
    def session(self) -> _Session:
        with _SESSIONS_LOCK:
            session = _SESSIONS.get(self.runtime)
            if session is None:
                if self.settings.api_key:
                    auth: ApiKeyAuth | JWTLogin = ApiKeyAuth(self.settings.api_key)
                else:
                    auth = JWTLogin(self.send_login, self.runtime.budgets.clock)
                session = _Session(auth)
                _SESSIONS[self.runtime] = session
            return session

    @property
    def authenticator(self) -> ApiKeyAuth | JWTLogin:
        return self.session.authenticator

    def send_login(self) -> requests.Response:
        """``POST /auth/login``: through the budget and the error handling, unauthenticated.

        Not retried on its own (``retries=0``): a transient failure fails the request that
        needed the token, which its own retries repeat, login included.
        """
        body = {"email": self.settings.email, "password": self.settings.password}
        return self.call("POST", self.url_base + LOGIN_PATH, json_body=body, retries=0)

    def on_unauthorized(
        self, prepared_request: requests.PreparedRequest, error: PlatformAuthError
    ) -> bool:
        """A JWT refused (401): log in again and send the request once more, unless a
        fresh token was refused too (no login loop)."""
        auth = self.authenticator
        if not isinstance(error, TokenRejectedError) or not isinstance(auth, JWTLogin):
            return False
        if not auth.renew_after_401(bearer_of(prepared_request)):
            return False
        self.logger.info("Datalinx: the token was refused (401); logged in again")
        return True

    # -- requests ----------------------------------------------------------------------

    def get_url(self, context: Context | None) -> str:
        # Concatenation keeps the `/api` of the base URL (doc).
        values = {k: quote(str(v), safe="") for k, v in (context or {}).items()}
        return self.url_base + (self.path or "").format(**values)

    def get_http_request(self, *, page: PageContext) -> HTTPRequest:
        request = super().get_http_request(page=page)
        name = self.workspace_name(page.stream_context)
        if self.workspace_scoped and name:
            # The workspace's name, never its id; only on scoped routes (assumed policy).
            value = header_value(name)
            request.headers["X-Workspace"] = cast("str", value)  # requests sends bytes as-is
        return request

    def workspace_name(self, context: Context | None) -> str | None:
        """The name of the context's workspace. A workspace-scoped partition is keyed by
        the workspace id alone (its bookmarks survive a rename, and the SDK finalizes a
        bookmark only where the context is the partition); the name, which X-Workspace
        and the records carry, is the one the workspace list gave for that id."""
        names = getattr(self.tap.streams.get("datalinx_workspaces"), "names", None)
        return names.of(context) if isinstance(names, NamesById) else None

    def get_new_paginator(self) -> EnvelopePaginator:
        return EnvelopePaginator()

    def get_url_params(
        self, context: Context | None, next_page_token: int | None
    ) -> dict[str, Any]:
        return {"page": next_page_token or 1, "page_size": PAGE_SIZE}

    def budget_rates(self, kind: str | None = None) -> list[Rate]:
        """Paced like every budget: the plans' per-minute limits and bursts (doc) are
        then never reached by a budget at or below their per-minute rate."""
        return rates_per_second(self.settings.max_requests_per_second)

    # -- answers -----------------------------------------------------------------------

    def error_message(self, body: dict[str, Any]) -> str | None:
        """``{status: "failed", message, error_code}``, or a framework's ``detail``."""
        message, code = body.get("message"), body.get("error_code")
        if isinstance(message, str) and message:
            return f"{message} ({code})" if code else message
        detail = body.get("detail")
        if isinstance(detail, str) and detail:
            return detail
        if isinstance(detail, list) and detail:
            parts = []
            for item in detail[:3]:
                if isinstance(item, dict):
                    where = ".".join(str(p) for p in item.get("loc") or [])
                    parts.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
            return "; ".join(parts) or None
        return str(code) if code else None

    def validate_status(self, response: requests.Response) -> None:
        if response.status_code == 404 and route_is_missing(response):
            raise RouteMissingError(self.describe_failure(response), 404)
        if (
            response.status_code == 401
            and isinstance(self.authenticator, JWTLogin)
            and not is_login(response.request)
        ):
            raise TokenRejectedError(self.describe_failure(response))
        super().validate_status(response)

    def validate_body(self, response: requests.Response) -> None:
        super().validate_body(response)
        body = response_json(response)
        if isinstance(body, dict) and body.get("status") == "failed":
            raise PartitionError(self.describe_failure(response), response.status_code)

    def observe_response(self, response: requests.Response) -> None:
        auth = self.authenticator
        if isinstance(auth, JWTLogin):
            auth.confirm(bearer_of(response.request))  # the token works
        body = response_json(response)
        pagination = body.get("pagination") if isinstance(body, dict) else None
        progress = self.progress
        if isinstance(pagination, dict) and progress is not None:
            total = pagination.get("total_items")
            if isinstance(total, int):
                progress.total = total
        self._tighten_budget(response)

    def _tighten_budget(self, response: requests.Response) -> None:
        """Spread what is left of the server's window until its reset.

        The core already pauses at zero remaining; with only a few requests left, they
        are spaced so that the last one lands just before the reset, which also leaves
        room for other processes of the organization sharing the limit.
        """
        remaining = response.headers.get("X-RateLimit-Remaining")
        if remaining is None:
            return
        try:
            left = int(float(remaining))
        except ValueError:
            return
        if left <= 0 or left >= DOCUMENTED_BURST:
            return
        now = self.budget.clock.time()
        reset = ratelimit.parse_instant(response.headers.get("X-RateLimit-Reset"), received_at=now)
        if reset is None or ratelimit.clamp_wait(reset, now=now) is None:
            return
        spacing = (reset - now) / (left + 1)
        if spacing > 0:
            self.budget.pause_until(now + spacing, reason=f"{left} requests left in the window")

    # -- records -----------------------------------------------------------------------

    def post_process(
        self, row: dict[str, Any], context: Context | None = None
    ) -> dict[str, Any] | None:
        for name, value in row.items():
            if name.endswith("_at") and isinstance(value, str | int | float):
                with contextlib.suppress(ValueError):  # kept as sent rather than lost
                    row[name] = to_rfc3339(value, epoch_unit="s")
        workspace = self.workspace_name(context) if self.workspace_scoped else None
        if workspace is not None and context is not None:
            row["workspace"] = workspace
            row["workspace_id"] = context["workspace_id"]
        return self.keep_if_changed(row, context)

    def keep_if_changed(
        self, row: dict[str, Any], context: Context | None
    ) -> dict[str, Any] | None:
        """Incremental reads are client-side: no updated-since filter is documented."""
        if not self.replication_key:
            return row
        if row.get(self.replication_key) is None:
            # A record never updated may carry only its creation time.
            row[self.replication_key] = row.get("created_at")
        start = self.replication_start(context)
        value = row.get(self.replication_key)
        if start is None or not isinstance(value, str):
            return row
        try:
            return row if parse_datetime(value) >= start else None
        except ValueError:
            return row


#: 404 codes that name what was not found: the route exists, the resource does not.
_GENERIC_NOT_FOUND = frozenset({"", "NOT_FOUND"})


def route_is_missing(response: requests.Response) -> bool:
    """Several routes are in no public source (see the API notes), so an instance may
    lack one. Its web framework then answers ``{"detail": "Not Found"}`` (or the envelope
    with the generic ``NOT_FOUND``); a missing workspace or pipeline has its own code."""
    try:
        body = response_json(response)
    except ValueError:
        return True
    if not isinstance(body, dict):
        return False
    code = body.get("error_code")
    return code is None or (isinstance(code, str) and code in _GENERIC_NOT_FOUND)


class AdminStream(DatalinxStream):
    """Organization administration (users, roles, service accounts) needs ``org.admin``.

    Without it such a route answers 403: the stream is skipped, one warning for all of
    them says why, and the sync goes on.
    """

    def request_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        try:
            yield from super().request_records(context)
        except PartitionError as exc:
            if exc.status != 403:
                raise
            session = self.session
            if not session.admin_denied:
                session.admin_denied = True
                self.runtime.warn_once(
                    "Datalinx: the credentials lack org.admin; organization streams "
                    f"(users, roles, service accounts) answering 403 are skipped: {exc}"
                )
            self.logger.info("Skipped %s: HTTP 403 (needs org.admin)", self.name)
