"""Datalinx AI: workspaces and their resources, users, roles, service accounts."""

from singer_sdk import typing as th

from tap_dataplatforms.core.config import PlatformSpec, budget_setting, url_setting

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

PLATFORM = PlatformSpec(
    key="datalinx",
    title="Datalinx",
    settings=SETTINGS,
    credential_groups=(("api_url", "api_key"), ("api_url", "email", "password")),
)
