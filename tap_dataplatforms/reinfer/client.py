"""The Re:infer base stream: bearer auth on the tenant endpoint, envelopes, cursors."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, urlsplit

from singer_sdk.authenticators import BearerTokenAuthenticator
from singer_sdk.exceptions import FatalAPIError
from singer_sdk.pagination import BaseAPIPaginator

from tap_dataplatforms.core.errors import RouteMissingError
from tap_dataplatforms.core.http import PlatformStream, response_json
from tap_dataplatforms.core.timestamps import to_rfc3339
from tap_dataplatforms.reinfer.settings import ReinferSettings

if TYPE_CHECKING:
    import requests
    from singer_sdk.helpers.types import Context

# Every path the tap calls, in one place: the `_private` ones are outside the public route
# table and may change without notice (notes, pitfall 1). Paths are appended to the
# configured endpoint as strings, so a UiPath prefix (`.../<org>/<tenant>/reinfer_`) stays.
CHECK_PATH = "/auth/user"
PROJECTS_PATH = "/api/_private/projects"
DATASETS_PATH = "/api/v1/datasets"
SOURCES_PATH = "/api/v1/sources"
COMMENTS_PATH = "/api/_private/sources/{project}/{source_name}/comments"
STREAMS_PATH = "/api/v1/datasets/{project}/{dataset_name}/streams"
LABELLINGS_PATH = "/api/_private/datasets/{project}/{dataset_name}/labellings"
# Both are reads sent as POST with a JSON body (client: the CLI's get_labellers and
# get_comment_predictions, retried like any read).
LABELLERS_PATH = "/api/_private/datasets/{project}/{dataset_name}/labellers"
PREDICT_PATH = (
    "/api/v1/datasets/{project}/{dataset_name}/labellers/{model_version}/predict-comments"
)
PRIVATE_PREFIX = "/api/_private/"

#: Messages a tenant sends for a path it does not know at all (doc: "404 Not Found"), as
#: opposed to a 404 naming a missing source or dataset (a partition error).
_GENERIC_NOT_FOUND = re.compile(
    r"(404)?\s*(not found|(route|path|endpoint|resource) not found|unknown (route|path))?"
)


def server_timing_total_ms(header: str | None) -> float | None:
    """The ``total`` metric of a ``Server-Timing`` header, in milliseconds (doc)."""
    if not header:
        return None
    for metric in header.split(","):
        name, *params = (part.strip() for part in metric.split(";"))
        if name.lower() != "total":
            continue
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "dur":
                try:
                    return float(value.strip().strip('"'))
                except ValueError:
                    return None
    return None


class CursorPaginator(BaseAPIPaginator[str | None]):
    """An opaque cursor read from one body field.

    ``stop_on_empty``: labellings end on an empty ``results`` page even while ``after`` is
    still sent; comments end only when ``continuation`` is null, an empty page is not the
    end. A cursor that comes back unchanged with records would loop, so the partition
    fails (the CLI treats it as a fatal bug).
    """

    def __init__(self, field: str, list_field: str, stop_on_empty: bool) -> None:
        super().__init__(None)
        self.field = field
        self.list_field = list_field
        self.stop_on_empty = stop_on_empty

    def get_next(self, response: requests.Response) -> str | None:
        body = response_json(response)
        items = body.get(self.list_field) or []
        if self.stop_on_empty and not items:
            return None
        token = body.get(self.field) or None
        if token is not None and token == self.current_value:
            raise FatalAPIError(
                f"Re:infer: the `{self.field}` cursor did not advance on {response.url}; "
                "stopping this partition instead of looping"
            )
        return token

    def continue_if_empty(self, response: requests.Response) -> bool:
        return not self.stop_on_empty and bool(self.get_next(response))


class ReinferStream(PlatformStream):
    platform = "reinfer"
    platform_title = "Re:infer"
    #: 403 is "no permission on that project": one partition, not the token (notes 8).
    auth_fatal_statuses = frozenset({401})
    #: The CLI retries 409 with backoff (notes 8).
    retry_statuses = frozenset({408, 409})
    #: The body field holding the list (every body also has ``status``).
    list_field: ClassVar[str] = ""
    #: Timestamp fields normalised to RFC 3339 UTC.
    timestamp_fields: ClassVar[tuple[str, ...]] = ("created_at", "updated_at")
    #: Context values copied onto every record (the parent's ids, for joins).
    parent_fields: ClassVar[tuple[str, ...]] = ()
    #: Errors are ``{"status": "error", "message": ...}``; a proxy's page (not JSON) adds
    #: nothing to the status line.
    error_keys = ("message",)
    error_text_detail = False

    @property
    def records_jsonpath(self) -> str:
        return f"$.{self.list_field}[*]"

    @property
    def settings(self) -> ReinferSettings:
        return self.runtime.settings.of(ReinferSettings, self.platform)

    @cached_property
    def authenticator(self) -> BearerTokenAuthenticator:
        return BearerTokenAuthenticator(token=self.settings.token)

    def get_url(self, context: Context | None) -> str:
        values = {k: quote(str(v), safe="") for k, v in (context or {}).items()}
        return self.url_base + (self.path or "").format(**values)

    # -- errors and timings ------------------------------------------------------------

    def validate_status(self, response: requests.Response) -> None:
        if response.status_code == 404 and PRIVATE_PREFIX in urlsplit(response.url).path:
            detail = (self.error_detail(response) or "").strip().lower().rstrip(".")
            if _GENERIC_NOT_FOUND.fullmatch(detail):
                # A `_private` route answered a bare 404: this tenant does not serve it
                # (any more); the stream is skipped.
                raise RouteMissingError(self.describe_failure(response), 404)
        super().validate_status(response)

    def request_metric_tags(self, response: requests.Response) -> dict[str, Any] | None:
        # The platform's own processing time next to the client-side duration of each
        # request, so network time can be told apart from platform time (doc).
        total = server_timing_total_ms(response.headers.get("Server-Timing"))
        return None if total is None else {"server_timing_total_ms": total}

    def observe_response(self, response: requests.Response) -> None:
        # The same split as totals for the whole sync, in the end-of-sync counters.
        total = server_timing_total_ms(response.headers.get("Server-Timing"))
        if total is not None:
            self.runtime.count(self.platform, "server_timing_ms", round(total))
            elapsed_ms = round(response.elapsed.total_seconds() * 1000)
            self.runtime.count(self.platform, "client_duration_ms", elapsed_ms)

    # -- records -------------------------------------------------------------------------

    def partition_label(self, context: Context | None) -> str:
        if not context:
            return self.name
        name = context.get("source_name") or context.get("dataset_name")
        parts = [f"{context.get('project')}/{name}"] if name else []
        if "source_id" in context and "dataset_name" in context:
            parts.append(f"source_id={context['source_id']}")
        return f"{self.name} [{', '.join(parts)}]" if parts else self.name

    def post_process(self, row: dict[str, Any], context: Context | None = None) -> dict[str, Any]:
        for name in self.timestamp_fields:
            if row.get(name) is not None:
                row[name] = to_rfc3339(row[name])
        for name in self.parent_fields:
            if context and name in context:
                row[name] = context[name]
        return row


def configured_names(values: Iterable[str] | None) -> list[str] | None:
    """``project/name`` entries of a setting, de-duplicated; ``None`` means all visible."""
    if values is None:
        return None
    return list(dict.fromkeys(v.strip().strip("/") for v in values if v and v.strip()))
