"""Dexi.io: runs, executions, results per run, dataset rows, files."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tap_dataplatforms.core.config import PlatformSpec
from tap_dataplatforms.core.http import connection_check
from tap_dataplatforms.dexi.discovery import discover
from tap_dataplatforms.dexi.settings import SETTINGS, DexiSettings
from tap_dataplatforms.dexi.streams import ExecutionsStream, FilesStream, RunsStream

if TYPE_CHECKING:
    from singer_sdk import Stream, Tap


def build_streams(tap: Tap) -> list[Stream]:
    """The fixed streams plus one results stream per run and one per dataset, whose
    columns are read from the data (the latest result, the first rows)."""
    return discover(tap)


def static_streams(tap: Tap) -> list[Stream]:
    """The streams every account has; the results and dataset streams come from the data."""
    return [RunsStream(tap), ExecutionsStream(tap), FilesStream(tap)]


PLATFORM = PlatformSpec(
    key="dexi",
    title="Dexi",
    settings=SETTINGS,
    settings_class=DexiSettings,
    credential_groups=(("account_id", "api_key"),),
    build_streams=build_streams,
    static_streams=static_streams,
    # The cheapest authenticated read: one run.
    check=connection_check("dexi_runs", "runs", {"offset": 0, "limit": 1}),
)
