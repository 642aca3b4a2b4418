"""Redivis settings: the declarations (names, types, defaults, descriptions) and
their typed form, which code reads as ``self.settings``."""

from __future__ import annotations

from dataclasses import dataclass

from singer_sdk import typing as th

from tap_dataplatforms.core.config import budget_setting, url_setting
from tap_dataplatforms.core.settings import PlatformSettings

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


@dataclass(frozen=True)
class RedivisSettings(PlatformSettings):
    """The ``redivis`` block, declared defaults applied (core/settings.py)."""

    token: str
    organizations: tuple[str, ...] | None
    users: tuple[str, ...] | None
    tables: tuple[str, ...] | None
    read_streams: int
