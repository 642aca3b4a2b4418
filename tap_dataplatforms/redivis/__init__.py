"""Redivis: datasets, tables, variables, and table rows through read sessions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from singer_sdk import typing as th

from tap_dataplatforms.core.config import PlatformSpec, budget_setting, url_setting
from tap_dataplatforms.core.http import check_connection
from tap_dataplatforms.redivis.client import RedivisStream, encode_reference
from tap_dataplatforms.redivis.streams import STREAMS

if TYPE_CHECKING:
    from singer_sdk import Stream, Tap

SETTINGS = (
    url_setting("https://redivis.com/api/v1", "https://redivis.com/api/v1"),
    th.Property("token", th.StringType, secret=True, description="API token (Bearer)."),
    th.Property(
        "organizations",
        th.ArrayType(th.StringType),
        description="Organizations whose datasets to list.",
    ),
    th.Property("users", th.ArrayType(th.StringType), description="Users whose datasets to list."),
    th.Property(
        "tables",
        th.ArrayType(th.StringType),
        description="Table references whose rows to extract, e.g. `owner.dataset:v1_0.table`.",
    ),
    th.Property(
        "read_streams",
        th.IntegerType(minimum=1),
        default=4,
        description="Parallel read streams per table.",
    ),
    budget_setting(16, "requests per second (the API allows about 1,000 a minute)"),
)


def build_streams(tap: Tap) -> list[Stream]:
    return [stream_type(tap) for stream_type in STREAMS]


def check(tap: Tap) -> None:
    """Reach the API with the token: the first organization, user or table configured."""
    stream = tap.streams["redivis_datasets"]
    assert isinstance(stream, RedivisStream)
    block = stream.settings
    if block.get("organizations"):
        path = f"/organizations/{encode_reference(block['organizations'][0])}/datasets"
    elif block.get("users"):
        path = f"/users/{encode_reference(block['users'][0])}/datasets"
    elif block.get("tables"):
        path = f"/tables/{encode_reference(block['tables'][0])}"
    else:
        return
    check_connection(stream, path, {"maxResults": 1} if "datasets" in path else None)


PLATFORM = PlatformSpec(
    key="redivis",
    title="Redivis",
    settings=SETTINGS,
    credential_groups=(("token",),),
    build_streams=build_streams,
    check=check,
)
