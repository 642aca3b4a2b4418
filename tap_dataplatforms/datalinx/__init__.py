"""Datalinx AI: workspaces and their resources, users, roles, service accounts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from singer_sdk import typing as th

from tap_dataplatforms.core.config import PlatformSpec, budget_setting, url_setting
from tap_dataplatforms.core.http import check_connection
from tap_dataplatforms.datalinx.client import DatalinxStream
from tap_dataplatforms.datalinx.streams import STREAMS

if TYPE_CHECKING:
    from singer_sdk import Stream, Tap

SETTINGS = (
    url_setting(None, "https://acme.datalinx.ai/api"),
    th.Property(
        "api_key", th.StringType, secret=True, description="Service-account key (`X-API-Key`)."
    ),
    th.Property(
        "email", th.StringType, description="User login email (JWT), used when no api_key is set."
    ),
    th.Property(
        "password",
        th.StringType,
        secret=True,
        description="User login password, used with `email`.",
    ),
    th.Property(
        "workspaces", th.ArrayType(th.StringType), description="Workspace names (default: all)."
    ),
    budget_setting(1, "requests per second (60 a minute, burst 10, Free tier)"),
)


def build_streams(tap: Tap) -> list[Stream]:
    return [stream_type(tap) for stream_type in STREAMS]


def check(tap: Tap) -> None:
    """List one workspace: proves the host, the credentials (logging in if need be)."""
    stream = tap.streams["datalinx_workspaces"]
    assert isinstance(stream, DatalinxStream)
    check_connection(stream, "/workspaces", {"page": 1, "page_size": 1})


PLATFORM = PlatformSpec(
    key="datalinx",
    title="Datalinx",
    settings=SETTINGS,
    credential_groups=(("api_url", "api_key"), ("api_url", "email", "password")),
    build_streams=build_streams,
    check=check,
)
