"""InVision settings: the declarations (names, types, defaults, descriptions) and
their typed form, which code reads as ``self.settings``."""

from __future__ import annotations

from dataclasses import dataclass

from singer_sdk import typing as th

from tap_dataplatforms.core.config import budget_setting, url_setting
from tap_dataplatforms.core.settings import PlatformSettings

SETTINGS = (
    url_setting(None, "https://host/invision"),
    th.Property(
        "api_key",
        th.StringType,
        secret=True,
        description="Data Flow Execution / API key, sent as the `x-api-key` header.",
    ),
    th.Property("dataflow_ids", th.ArrayType(th.StringType), description="Data flows to trigger."),
    th.Property(
        "trigger_dataflows",
        th.BooleanType,
        default=False,
        description="Start each data flow and wait for it (a side effect: off by default).",
    ),
    th.Property(
        "await_timeout_seconds",
        th.IntegerType(minimum=1),
        default=3600,
        description="Give up waiting for a run after this many seconds.",
    ),
    th.Property(
        "poll_interval_seconds",
        th.NumberType(exclusive_minimum=0),
        default=5,
        description="First status poll interval; it grows with backoff.",
    ),
    th.Property(
        "tables",
        th.ArrayType(th.StringType),
        description="Tables whose data to read through the JSON Data API.",
    ),
    th.Property(
        "monitoring_api_key",
        th.StringType,
        secret=True,
        description=(
            "Key from the Monitoring tab, for the execution log and for finding the run "
            "a start whose answer was lost created (default: api_key)."
        ),
    ),
    th.Property(
        "data_api_key",
        th.StringType,
        secret=True,
        description="Key from the Data tab, for table data (default: api_key).",
    ),
    budget_setting(5, "requests per second"),
)


@dataclass(frozen=True)
class InvisionSettings(PlatformSettings):
    """The ``invision`` block, declared defaults applied (core/settings.py)."""

    api_key: str
    dataflow_ids: tuple[str, ...] | None
    trigger_dataflows: bool
    await_timeout_seconds: int
    poll_interval_seconds: float
    tables: tuple[str, ...] | None
    monitoring_api_key: str | None
    data_api_key: str | None
