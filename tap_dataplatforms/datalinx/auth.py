"""Datalinx credentials: a service-account key, or a user login that yields a JWT.

One object per tap run authenticates every stream, so a JWT is obtained once and shared.
The docs give no refresh endpoint, only ``expires_in`` (one hour) on the login answer, so
the tap logs in again shortly before the token runs out and, once, after a 401; a token
obtained after a 401 that is rejected again before any success ends the sync.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from tap_dataplatforms.core.budget import Clock
from tap_dataplatforms.core.errors import PlatformAuthError
from tap_dataplatforms.core.http import response_json
from tap_dataplatforms.core.redact import register_secret

LOGIN_PATH = "/auth/login"
DEFAULT_EXPIRES_IN = 3600.0
#: Renew when this much of the token's life is left ("less than a minute", assumed),
#: but never more than a fifth of it, so short-lived tokens are not renewed every request.
RENEW_MARGIN_SECONDS = 60.0
RENEW_MARGIN_SHARE = 0.2


class TokenRejectedError(PlatformAuthError):
    """A request that carried a JWT was answered 401."""


def is_login(request: requests.PreparedRequest | None) -> bool:
    path = (request.path_url if request is not None else "").split("?", 1)[0]
    return path.endswith(LOGIN_PATH)


def bearer_of(request: requests.PreparedRequest) -> str | None:
    value = request.headers.get("Authorization")
    if not value or not str(value).startswith("Bearer "):
        return None
    return str(value)[len("Bearer ") :]


class ApiKeyAuth:
    """``X-API-Key: <key>`` on every request (service accounts)."""

    def __init__(self, key: str) -> None:
        self._key = key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["X-API-Key"] = self._key
        request.headers.pop("Authorization", None)
        return request


@dataclass
class _Token:
    value: str
    renew_at: float  # monotonic
    after_401: bool
    confirmed: bool = False


class JWTLogin:
    """``Authorization: Bearer <JWT>`` from ``POST /auth/login``, renewed before expiry.

    ``send_login`` sends the login request through the request discipline (budget,
    errors) and returns its response; the login request itself passes unauthenticated.
    """

    def __init__(self, send_login: Callable[[], requests.Response], clock: Clock) -> None:
        self._send_login = send_login
        self._clock = clock
        self._lock = threading.RLock()
        self._token: _Token | None = None
        self.logins = 0

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if is_login(request):
            request.headers.pop("Authorization", None)
            return request
        request.headers["Authorization"] = f"Bearer {self.current()}"
        return request

    def current(self) -> str:
        with self._lock:
            token = self._token
            if token is None or self._clock.monotonic() >= token.renew_at:
                token = self._login(after_401=False)
            return token.value

    def renew_after_401(self, rejected: str | None) -> bool:
        """Whether a request whose token was rejected may be sent once more."""
        with self._lock:
            token = self._token
            if token is not None and rejected is not None and token.value != rejected:
                return True  # already renewed meanwhile
            if token is not None and token.after_401 and not token.confirmed:
                return False  # a fresh token was refused too: no login loop
            self._login(after_401=True)
            return True

    def confirm(self, used: str | None) -> None:
        """A request with ``used`` succeeded: the token works."""
        with self._lock:
            if self._token is not None and self._token.value == used:
                self._token.confirmed = True

    def _login(self, *, after_401: bool) -> _Token:
        sent_at = self._clock.monotonic()
        response = self._send_login()
        body: Any = response_json(response)
        # The documented answer is bare; an enveloped one is accepted too.
        if isinstance(body, dict) and isinstance(body.get("data"), dict):
            body = body["data"]
        value = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(value, str) or not value:
            raise PlatformAuthError("Datalinx: the login answer carried no access_token")
        register_secret(value)
        try:
            expires_in = float(body.get("expires_in") or DEFAULT_EXPIRES_IN)
        except (TypeError, ValueError):
            expires_in = DEFAULT_EXPIRES_IN
        margin = min(RENEW_MARGIN_SECONDS, expires_in * RENEW_MARGIN_SHARE)
        self._token = _Token(value, sent_at + expires_in - margin, after_401)
        self.logins += 1
        return self._token
