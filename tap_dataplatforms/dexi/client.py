"""The Dexi base stream: account + MD5 digest headers, offset/limit pages, two budgets."""

from __future__ import annotations

import hashlib
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, cast
from urllib.parse import quote

from pyrate_limiter import Rate
from singer_sdk.authenticators import APIAuthenticatorBase
from singer_sdk.pagination import BaseAPIPaginator

from tap_dataplatforms.core.budget import rates_per_second
from tap_dataplatforms.core.http import PlatformStream, response_json
from tap_dataplatforms.core.redact import register_secret
from tap_dataplatforms.dexi.settings import DexiSettings

if TYPE_CHECKING:
    import requests
    from singer_sdk.helpers.types import Context

#: The documented cap of rows per list request; a larger ``limit`` is silently cut.
PAGE_SIZE = 200
#: Writes (and the POST that reads dataset rows) and file downloads: about 15/s (doc).
WRITE_RATE_PER_SECOND = 15.0
#: Every request of the account: reads, and writes too.
READS = "requests"
WRITES = "writes"


def access_digest(account_id: str, api_key: str) -> str:
    """``X-DexiIO-Access``: MD5 of account id then key, as 32 lowercase hex characters.

    ``hexdigest`` keeps leading zeros, which a base-16 integer rendering would drop.
    """
    return hashlib.md5(  # the platform's scheme, not a security choice of ours
        (account_id + api_key).encode("utf-8"), usedforsecurity=False
    ).hexdigest()


def encode_segment(value: str) -> str:
    return quote(value, safe="")


def encode_file_id(file_id: str) -> str:
    """File ids keep their ``/`` (the official client sends them so); only what is
    unsafe in a path (space, ``%``, ``?``, ``#``, non-ASCII) is percent-encoded."""
    return quote(file_id, safe="/:;=@!$&'()*+,~-._")


class DexiAuthenticator(APIAuthenticatorBase):
    """Two headers on every request; the digest is as secret as the key itself."""

    def __init__(self, account_id: str, api_key: str) -> None:
        super().__init__()
        digest = access_digest(account_id, api_key)
        register_secret(digest)
        self.auth_headers = {"X-DexiIO-Account": account_id, "X-DexiIO-Access": digest}


class OffsetPaginator(BaseAPIPaginator[int]):
    """``offset`` grows by the rows actually received until it reaches ``totalRows``.

    Advancing by the requested limit would skip rows whenever the server caps a page.
    """

    def __init__(self) -> None:
        super().__init__(0)

    def get_next(self, response: requests.Response) -> int | None:
        body = response_json(response)
        rows = body.get("rows") or []
        offset = int(self.current_value) + len(rows)
        total = body.get("totalRows")
        if not rows or (total is not None and offset >= int(total)):
            return None
        if total is None and len(rows) < PAGE_SIZE:
            return None  # without a total, a short page is the last
        return offset


class DexiStream(PlatformStream):
    platform = "dexi"
    platform_title = "Dexi"
    records_jsonpath = "$.rows[*]"
    #: Every request counts toward the account's 75/s (doc: requests per account); writes,
    #: downloads and the POST that reads dataset rows (a read or a write? the docs do not
    #: say) take a token from the 15/s budget too.
    extra_budget_kinds = (READS,)
    #: Context values copied onto every record (the parent's ids, for joins).
    parent_fields: ClassVar[tuple[str, ...]] = ()
    #: Errors are ``{"error": true, "code": N}``, with ``msg`` or ``message`` when present.
    error_keys = ("msg", "message")

    @property
    def settings(self) -> DexiSettings:
        return self.runtime.settings.of(DexiSettings, self.platform)

    @property
    def url_base(self) -> str:
        # Paths have no leading slash and are appended to a base ending in "/".
        return self.settings.api_url.rstrip("/") + "/"

    @cached_property
    def authenticator(self) -> DexiAuthenticator:
        return DexiAuthenticator(self.settings.account_id, self.settings.api_key)

    @property
    def http_headers(self) -> dict[str, Any]:
        # The official client sends both on every call, GET included.
        return {**super().http_headers, "Content-Type": "application/json"}

    def budget_rates(self, kind: str | None = None) -> list[Rate]:
        # Dexi sends no rate-limit headers to steer by: the pacing's own room for requests
        # that reach the server bunched (core.budget.PACING_ROOM) is all the margin.
        if (kind or self.budget_kind) == WRITES:
            return rates_per_second(WRITE_RATE_PER_SECOND)
        return super().budget_rates(kind)

    def get_url(self, context: Context | None) -> str:
        values = {k: encode_segment(str(v)) for k, v in (context or {}).items()}
        return self.url_base + (self.path or "").format(**values)

    def get_new_paginator(self) -> BaseAPIPaginator[Any]:
        return OffsetPaginator()

    def get_url_params(self, context: Context | None, next_page_token: Any) -> dict[str, Any]:
        return {"offset": next_page_token or 0, "limit": PAGE_SIZE}

    def observe_response(self, response: requests.Response) -> None:
        progress = self.progress
        if progress is None or not self.expects_json:
            return
        try:
            body = response_json(response)
        except ValueError:
            return
        if isinstance(body, dict) and isinstance(body.get("totalRows"), int):
            progress.total = body["totalRows"]

    def post_process(self, row: dict[str, Any], context: Context | None = None) -> dict[str, Any]:
        for name in self.parent_fields:
            if context and name in context:
                row[name] = context[name]
        return row

    # -- one-off requests (discovery, single objects), through the same discipline --------

    def fetch_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return response_json(self.call("GET", self.url_base + path, params=params))

    def fetch_rows(
        self,
        path: str,
        params: dict[str, Any] | None = None,
        *,
        method: str = "GET",
        body: Any = None,
    ) -> dict[str, Any]:
        """A documented ``{"rows": [...], ...}`` answer (a listing, or a result read whole);
        valid JSON of another shape fails, naming the endpoint and what came."""
        response = self.call(method, self.url_base + path, params=params, json_body=body)
        self.documented_list(response, "rows")
        return cast("dict[str, Any]", response_json(response))
