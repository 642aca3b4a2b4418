"""Dexi.io: runs, executions, results per run, dataset rows, files."""

from __future__ import annotations

from typing import TYPE_CHECKING

from singer_sdk import typing as th

from tap_dataplatforms.core.config import PlatformSpec, budget_setting, url_setting
from tap_dataplatforms.core.http import check_connection
from tap_dataplatforms.dexi.discovery import discover
from tap_dataplatforms.dexi.streams import ExecutionsStream, FilesStream, RunsStream

if TYPE_CHECKING:
    from singer_sdk import Stream, Tap

SETTINGS = (
    th.Property("account_id", th.StringType, description="Dexi account id."),
    th.Property("api_key", th.StringType, secret=True, description="Dexi API key."),
    url_setting("https://api.dexi.io/", "https://api.dexi.io/"),
    th.Property(
        "run_ids",
        th.ArrayType(th.StringType),
        description="Restrict to these runs (default: all runs).",
    ),
    th.Property(
        "dataset_ids", th.ArrayType(th.StringType), description="Datasets whose rows to extract."
    ),
    th.Property(
        "download_files",
        th.BooleanType,
        default=False,
        description="Fetch the files referenced by `FILE:` cells.",
    ),
    th.Property(
        "execute_runs",
        th.BooleanType,
        default=False,
        description=(
            "Start each selected run, wait for it, then extract its results "
            "(a side effect: off by default)."
        ),
    ),
    th.Property(
        "files_dir", th.StringType, default="dexi-files", description="Where downloaded files go."
    ),
    th.Property(
        "result_stream_names",
        th.ObjectType(additional_properties=th.StringType),
        description=(
            "Run id -> the name of its results stream (`dexi_results__<name>`), pinning it "
            "whatever the rule would give (the oldest of runs sharing a name keeps the bare "
            "slug, newer ones get `_` + 8 id characters)."
        ),
    ),
    th.Property(
        "strict_results",
        th.BooleanType,
        default=False,
        description=(
            "A result or file the API says is gone (404/410): false (default) names it in "
            "the summary and moves the bookmark past its execution; true fails the run "
            "there and keeps the bookmark before it, every run, until it is resolved."
        ),
    ),
    budget_setting(75, "GET requests per second; writes and file downloads use 15/s"),
)


def build_streams(tap: Tap) -> list[Stream]:
    """The fixed streams plus one results stream per run and one per dataset, whose
    columns are read from the data (the latest result, the first rows)."""
    return discover(tap)


def static_streams(tap: Tap) -> list[Stream]:
    """The streams every account has; the results and dataset streams come from the data."""
    return [RunsStream(tap), ExecutionsStream(tap), FilesStream(tap)]


def check(tap: Tap) -> None:
    """The cheapest authenticated read: one run."""
    stream = tap.streams["dexi_runs"]
    assert isinstance(stream, RunsStream)
    check_connection(stream, "runs", {"offset": 0, "limit": 1})


PLATFORM = PlatformSpec(
    key="dexi",
    title="Dexi",
    settings=SETTINGS,
    credential_groups=(("account_id", "api_key"),),
    build_streams=build_streams,
    static_streams=static_streams,
    check=check,
)
