"""Redivis: datasets, tables, variables, and table rows through read sessions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tap_dataplatforms.core.config import PlatformSpec
from tap_dataplatforms.core.errors import PartitionError
from tap_dataplatforms.core.http import check_connection, reaching, response_json
from tap_dataplatforms.core.naming import distinct_slugs
from tap_dataplatforms.core.partition import in_partition
from tap_dataplatforms.redivis.client import RedivisStream, encode_reference
from tap_dataplatforms.redivis.rows import TableRowsStream
from tap_dataplatforms.redivis.settings import SETTINGS, RedivisSettings
from tap_dataplatforms.redivis.streams import STREAMS

if TYPE_CHECKING:
    from singer_sdk import Stream, Tap


def describe_table(
    client: RedivisStream, reference: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The table resource and all its variables (paged by ``pageToken``)."""
    base = f"{client.url_base}/tables/{encode_reference(reference)}"
    table = response_json(client.call("GET", base))
    variables: list[dict[str, Any]] = []
    for page in client.pages(f"{base}/variables", _variables_page):
        variables += response_json(page).get("results") or []
    return table, variables


def _variables_page(token: str | None) -> dict[str, Any]:
    return {"maxResults": 1000, **({"pageToken": token} if token else {})}


def build_streams(tap: Tap) -> list[Stream]:
    streams: list[Stream] = [stream_type(tap) for stream_type in STREAMS]
    client = streams[0]
    assert isinstance(client, RedivisStream)
    return streams + table_row_streams(client)


def table_row_streams(client: RedivisStream) -> list[Stream]:
    """One `redivis_rows__<table>` per configured table, typed from its variables.

    A table that cannot be read (404: missing, or hidden from this token) is skipped
    and reported in the sync's failure summary.
    """
    tables: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    partition = client.common.partition
    references = [t for t in client.settings.tables or () if in_partition(partition, t)]
    for reference in dict.fromkeys(references):
        try:
            with reaching(client):
                tables.append(describe_table(client, reference))
        except PartitionError as exc:
            # Found while discovering: the table gets no stream, so no version to hold back.
            client.runtime.record_failure(f"redivis_rows [table={reference}]", str(exc), streams=())
            client.logger.error("Skipping table %s: %s", reference, exc)
    names = distinct_slugs(
        [(i, str(table.get("name") or "table")) for i, (table, _) in enumerate(tables)],
        suffix=lambda i: str(tables[i][0].get("referenceId") or tables[i][0].get("id"))[:8],
        fallback="table",
    )
    streams: list[Stream] = [
        TableRowsStream(
            client.tap, name=f"redivis_rows__{names[i]}", table=table, variables=variables
        )
        for i, (table, variables) in enumerate(tables)
    ]
    return streams


def check(tap: Tap) -> None:
    """Reach the API with the token: the first organization, user or table configured."""
    stream = tap.streams["redivis_datasets"]
    assert isinstance(stream, RedivisStream)
    block = stream.settings
    if block.organizations:
        path = f"/organizations/{encode_reference(block.organizations[0])}/datasets"
    elif block.users:
        path = f"/users/{encode_reference(block.users[0])}/datasets"
    elif block.tables:
        path = f"/tables/{encode_reference(block.tables[0])}"
    else:
        return
    check_connection(stream, path, {"maxResults": 1} if "datasets" in path else None)


PLATFORM = PlatformSpec(
    key="redivis",
    title="Redivis",
    settings=SETTINGS,
    settings_class=RedivisSettings,
    credential_groups=(("token",),),
    streams=STREAMS,
    build_streams=build_streams,
    check=check,
)
