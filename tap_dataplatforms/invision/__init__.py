"""Profitbase InVision: data flow runs, the execution log, table data."""

from singer_sdk import typing as th

from tap_dataplatforms.core.config import PlatformSpec, budget_setting, url_setting

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
    budget_setting(5, "requests per second"),
)

PLATFORM = PlatformSpec(
    key="invision",
    title="InVision",
    settings=SETTINGS,
    credential_groups=(("api_url", "api_key"),),
)
