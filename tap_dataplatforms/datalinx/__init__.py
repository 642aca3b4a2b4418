"""Datalinx AI: workspaces and their resources, users, roles, service accounts."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import requests

from tap_dataplatforms.core.config import PlatformSpec
from tap_dataplatforms.core.errors import PartitionError, PlatformAuthError
from tap_dataplatforms.core.http import connection_check, response_json
from tap_dataplatforms.datalinx.client import DatalinxStream
from tap_dataplatforms.datalinx.openapi import OpenApiDocument
from tap_dataplatforms.datalinx.schemas import merged
from tap_dataplatforms.datalinx.settings import SETTINGS, DatalinxSettings
from tap_dataplatforms.datalinx.streams import STREAMS, WorkspacesStream

if TYPE_CHECKING:
    from singer_sdk import Stream, Tap


#: Where an instance publishes its API description, under the base URL (doc).
OPENAPI_PATH = "/openapi.json"
#: Streams offered whatever the document lists: the parent of every workspace's streams.
ALWAYS = frozenset({WorkspacesStream.name})


class _DocumentReader(WorkspacesStream):
    """Reads the document without credentials, so that reading it neither logs in nor
    spends a token's life. The notes do not say whether an instance guards it (assumed
    public, as the web framework serves it); one that does is read with the written
    schemas (``published_api``)."""

    @property
    def authenticator(self) -> Any:
        return _no_credentials


def _no_credentials(request: requests.PreparedRequest) -> requests.PreparedRequest:
    return request


def published_api(tap: Tap) -> OpenApiDocument | None:
    """The instance's OpenAPI document, or ``None`` when it does not answer with one (the
    written schemas are used then). One request, through the budget, not retried: the
    document is optional, so no answer of its own (a 404, a 401 or 403 of an instance
    that guards it, an error) ends the run."""
    probe = _DocumentReader(tap)
    try:
        response = probe.call("GET", probe.url_base + OPENAPI_PATH, retries=0)
        return OpenApiDocument(response_json(response))
    except Exception as exc:
        status = exc.status if isinstance(exc, PartitionError) else None
        if isinstance(exc, PlatformAuthError) or status in (401, 403):
            # Refused: unexpected for a public document, so said once, plainly.
            probe.logger.warning(
                "Datalinx: the OpenAPI document was refused (%s); using the written schemas",
                exc,
            )
        else:
            probe.logger.info(
                "Datalinx: no OpenAPI document at %s (%s); using the written schemas",
                OPENAPI_PATH,
                type(exc).__name__,
            )
        return None


def written_streams(tap: Tap) -> list[Stream]:
    """Every resource's stream with its written schema (no request)."""
    return [stream_type(tap) for stream_type in STREAMS]


def build_streams(tap: Tap) -> list[Stream]:
    """Every resource's stream, with the properties the instance's OpenAPI document gives
    it; a resource whose list route the document does not have is not offered."""
    document = published_api(tap)
    if document is None:
        return written_streams(tap)
    streams: list[Stream] = []
    missing = []
    for stream_type in STREAMS:
        name, path = (str(vars_of(stream_type, key)) for key in ("name", "path"))
        # Pipeline runs are listed per pipeline: they need the pipelines' route too.
        needed = [path, *(["/pipelines"] if "{pipeline_id}" in path else [])]
        if name not in ALWAYS and not all(map(document.has_list_route, needed)):
            missing.append(f"{name} (GET {path})")
            continue
        published = document.item_schema(path)
        written = stream_type.written_schema
        schema = merged(written, published) if published is not None else None
        streams.append(stream_type(tap, schema=copy.deepcopy(schema) if schema else None))
    if missing:
        tap.logger.warning(
            "Datalinx: the instance's OpenAPI document has no route for %s; not offered",
            ", ".join(missing),
        )
    return streams


def vars_of(stream_type: type[DatalinxStream], key: str) -> Any:
    """A class attribute the SDK types as an instance one (``name``, ``path``)."""
    return getattr(stream_type, key)


PLATFORM = PlatformSpec(
    key="datalinx",
    title="Datalinx",
    settings=SETTINGS,
    settings_class=DatalinxSettings,
    credential_groups=(("api_url", "api_key"), ("api_url", "email", "password")),
    streams=STREAMS,
    build_streams=build_streams,
    # List one workspace: proves the host, the credentials (logging in if need be).
    check=connection_check("datalinx_workspaces", "/workspaces", {"page": 1, "page_size": 1}),
)
