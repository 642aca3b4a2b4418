"""The Redivis base stream: bearer auth, page tokens, references, both error shapes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from pyrate_limiter import Rate
from singer_sdk.authenticators import BearerTokenAuthenticator
from singer_sdk.pagination import BaseAPIPaginator

from tap_dataplatforms.core.budget import rates_per_second, with_cap
from tap_dataplatforms.core.http import PlatformStream, response_json
from tap_dataplatforms.core.timestamps import to_rfc3339
from tap_dataplatforms.redivis.settings import RedivisSettings

if TYPE_CHECKING:
    import requests
    from singer_sdk.helpers.types import Context

# Documented: roughly 1,000 requests per 60-second interval.
DOCUMENTED_RATE = Rate(1000, 60_000)


def encode_reference(reference: str) -> str:
    """A reference is one path segment, fully percent-encoded (`:` becomes `%3A`)."""
    return quote(reference, safe="")


class PageTokenPaginator(BaseAPIPaginator[str | None]):
    """``pageToken`` until ``nextPageToken`` is null or empty.

    An empty ``results`` page that still carries a token is not the end.
    """

    def __init__(self) -> None:
        super().__init__(None)

    def get_next(self, response: requests.Response) -> str | None:
        return response_json(response).get("nextPageToken") or None

    def continue_if_empty(self, response: requests.Response) -> bool:
        return bool(self.get_next(response))


class RedivisStream(PlatformStream):
    platform = "redivis"
    platform_title = "Redivis"
    records_jsonpath = "$.results[*]"
    #: Page size: the documented default; variables are listed 1,000 at a time.
    page_size: ClassVar[int] = 100
    #: Fields sent as epoch milliseconds, emitted as RFC 3339.
    epoch_ms_fields: ClassVar[tuple[str, ...]] = ("createdAt", "updatedAt", "releasedAt")
    #: 404 also hides resources one may not see and 403 may concern one dataset's
    #: access level (doc), so only 401 condemns the token; 403 fails that partition.
    auth_fatal_statuses = frozenset({401})
    #: Context values copied onto every record (the parent's ids, for joins).
    parent_fields: ClassVar[tuple[str, ...]] = ()

    @property
    def settings(self) -> RedivisSettings:
        return self.runtime.settings.of(RedivisSettings, self.platform)

    @cached_property
    def authenticator(self) -> BearerTokenAuthenticator:
        return BearerTokenAuthenticator(token=self.settings.token)

    def budget_rates(self, kind: str | None = None) -> list[Rate]:
        rates = rates_per_second(self.settings.max_requests_per_second)
        return with_cap(rates, DOCUMENTED_RATE)

    def get_url(self, context: Context | None) -> str:
        values = {k: encode_reference(str(v)) for k, v in (context or {}).items()}
        return self.url_base + (self.path or "").format(**values)

    def get_new_paginator(self) -> PageTokenPaginator:
        return PageTokenPaginator()

    def get_url_params(
        self, context: Context | None, next_page_token: str | None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"maxResults": self.page_size}
        if next_page_token:
            params["pageToken"] = next_page_token
        return params

    def error_message(self, body: dict[str, Any]) -> str | None:
        """``{"error": {"message", ...}}``, or OAuth style ``error`` + ``error_description``."""
        error = body.get("error")
        if isinstance(error, dict):
            message = str(error.get("message") or "")
            description = error.get("description")
            return f"{message} ({description})" if description else message or None
        if body.get("error_description"):
            return (
                f"{body.get('error_description')} ({error})"
                if error
                else str(body["error_description"])
            )
        return str(error) if error else None

    def observe_response(self, response: requests.Response) -> None:
        # Deprecations arrive only in this header, possibly repeated.
        if "X-Redivis-Warning" not in response.headers:
            return
        raw_headers: Any = getattr(response.raw, "headers", None)
        if raw_headers is not None and hasattr(raw_headers, "getlist"):
            texts = raw_headers.getlist("X-Redivis-Warning")
        else:
            texts = [response.headers["X-Redivis-Warning"]]
        for text in texts:
            self.runtime.warn_once(f"Redivis warning: {text.strip()}")

    def read_ahead_answers(self, context: Context | None) -> Iterator[requests.Response] | None:
        """Answers for this partition read ahead by a worker (``redivis.prefetch``), in
        page order; ``None`` when it was not read ahead."""
        return None

    def request_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        answers = self.read_ahead_answers(context)
        if answers is None:
            yield from super().request_records(context)
            return
        with self.get_http_request_counter() as counter:
            counter.with_context(context)
            for response in answers:
                counter.increment()
                yield from self.parse_response(response)

    def post_process(self, row: dict[str, Any], context: Context | None = None) -> dict[str, Any]:
        for name in self.epoch_ms_fields:
            if name in row:
                row[name] = to_rfc3339(row[name], epoch_unit="ms")
        for name in self.parent_fields:
            if context and name in context:
                row[name] = context[name]
        return row
