"""The InVision base stream: the ``x-api-key`` header, a short retry bound, 500 bodies.

InVision documents a single error answer, HTTP 500, for a bad id, a bad key and a
server fault alike (Data Flow Execution API docs). Retrying tells an outage from a
permanent error only up to a point, so the bound here is small: a handful of tries,
then the partition fails with the platform's own text naming the flow or the table.
"""

from __future__ import annotations

import html
import re
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import quote

import requests

from tap_dataplatforms.core.http import PlatformStream, response_json
from tap_dataplatforms.invision.settings import InvisionSettings

if TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

#: Retries of a failing request before its partition fails (``max_retries`` may lower it).
MAX_RETRIES = 3
#: How much of an error body reaches the user.
MAX_DETAIL_CHARS = 300
_TAG = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]+>", re.IGNORECASE | re.DOTALL)
_SPACE = re.compile(r"\s+")
# Error envelopes seen from .NET services: ASP.NET Web API (``Message`` +
# ``ExceptionMessage``), ProblemDetails (``title`` + ``detail``), or a plain ``error``.
_DETAIL_KEYS = ("message", "exceptionmessage", "error", "error_description", "title", "detail")


def encode_segment(value: str) -> str:
    """A name or id as one fully percent-encoded path segment."""
    return quote(value, safe="")


def body_text(text: str) -> str | None:
    """A few hundred characters of a body that may be JSON text, plain text or HTML."""
    if "<" in text and ">" in text:
        text = html.unescape(_TAG.sub(" ", text))
    text = _SPACE.sub(" ", text).strip()
    if len(text) > MAX_DETAIL_CHARS:
        text = text[: MAX_DETAIL_CHARS - 3] + "..."
    return text or None


class ApiKeyHeader(requests.auth.AuthBase):
    """``x-api-key: <key>`` and nothing else.

    The SDK's API-key authenticator rebuilds the query string even when it adds no
    parameter, which turns the monitoring filter's ``%20`` into ``+``.
    """

    def __init__(self, key: str) -> None:
        self.key = key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["x-api-key"] = self.key
        return request


class InVisionStream(PlatformStream):
    platform = "invision"
    platform_title = "InVision"
    #: The setting holding this API's key; ``api_key`` when that one is not set.
    key_setting: ClassVar[str] = "api_key"

    @property
    def settings(self) -> InvisionSettings:
        return self.runtime.settings.of(InvisionSettings, self.platform)

    @property
    def api_key(self) -> str:
        return str(getattr(self.settings, self.key_setting) or self.settings.api_key)

    @cached_property
    def authenticator(self) -> ApiKeyHeader:
        # The header only: an ``api_key`` query parameter would land in URLs and logs.
        return ApiKeyHeader(self.api_key)

    def backoff_max_tries(self) -> int:
        retries = min(self.common.max_retries, MAX_RETRIES)
        return retries + 1

    def get_url(self, context: Context | None) -> str:
        values = {k: encode_segment(str(v)) for k, v in (context or {}).items()}
        return self.url_base + (self.path or "").format(**values)

    def error_detail(self, response: requests.Response) -> str | None:
        try:
            body = response_json(response)
        except ValueError:
            return body_text(response.text)
        if isinstance(body, str):
            return body_text(body)
        if not isinstance(body, dict):
            return body_text(response.text)
        lowered = {str(k).lower(): v for k, v in body.items()}
        parts: list[str] = []
        for key in _DETAIL_KEYS:
            value = lowered.get(key)
            if isinstance(value, str) and value.strip() and value.strip() not in parts:
                parts.append(value.strip())
        return body_text(": ".join(parts)) if parts else body_text(response.text)
