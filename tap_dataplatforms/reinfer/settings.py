"""Re:infer settings: the declarations (names, types, defaults, descriptions) and
their typed form, which code reads as ``self.settings``."""

from __future__ import annotations

from dataclasses import dataclass

from singer_sdk import typing as th

from tap_dataplatforms.core.config import budget_setting, url_setting
from tap_dataplatforms.core.settings import PlatformSettings

SETTINGS = (
    url_setting(None, "https://acme.reinfer.io"),
    th.Property("token", th.StringType, secret=True, description="API token (Bearer)."),
    th.Property(
        "sources",
        th.ArrayType(th.StringType),
        description="`project/source` names whose comments to extract (default: all visible).",
    ),
    th.Property(
        "datasets",
        th.ArrayType(th.StringType),
        description=(
            "`project/dataset` names for streams, labellings and predictions "
            "(default: all visible)."
        ),
    ),
    budget_setting(10, "requests per second"),
)


@dataclass(frozen=True)
class ReinferSettings(PlatformSettings):
    """The ``reinfer`` block, declared defaults applied (core/settings.py)."""

    token: str
    sources: tuple[str, ...] | None
    datasets: tuple[str, ...] | None
