"""Datalinx settings: the declarations (names, types, defaults, descriptions) and
their typed form, which code reads as ``self.settings``."""

from __future__ import annotations

from dataclasses import dataclass

from singer_sdk import typing as th

from tap_dataplatforms.core.config import budget_setting, url_setting
from tap_dataplatforms.core.settings import PlatformSettings

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


@dataclass(frozen=True)
class DatalinxSettings(PlatformSettings):
    """The ``datalinx`` block, declared defaults applied (core/settings.py)."""

    api_key: str | None
    email: str | None
    password: str | None
    workspaces: tuple[str, ...] | None
