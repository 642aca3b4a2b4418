"""Dexi.io: runs, executions, results per run, dataset rows, files."""

from __future__ import annotations

from tap_dataplatforms.core.config import PlatformSpec
from tap_dataplatforms.core.http import connection_check
from tap_dataplatforms.dexi.discovery import discover
from tap_dataplatforms.dexi.settings import SETTINGS, DexiSettings
from tap_dataplatforms.dexi.streams import ExecutionsStream, FilesStream, RunsStream

PLATFORM = PlatformSpec(
    key="dexi",
    title="Dexi",
    settings=SETTINGS,
    settings_class=DexiSettings,
    credential_groups=(("account_id", "api_key"),),
    # The streams every account has; discovery adds one results stream per run and one
    # per dataset, whose columns are read from the data (the latest result, first rows).
    streams=(RunsStream, ExecutionsStream, FilesStream),
    build_streams=discover,
    # The cheapest authenticated read: one run.
    check=connection_check("dexi_runs", "runs", {"offset": 0, "limit": 1}),
)
