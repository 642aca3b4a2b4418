"""Dexi settings: the declarations (names, types, defaults, descriptions) and
their typed form, which code reads as ``self.settings``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from singer_sdk import typing as th

from tap_dataplatforms.core.config import budget_setting, url_setting
from tap_dataplatforms.core.settings import PlatformSettings

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


@dataclass(frozen=True)
class DexiSettings(PlatformSettings):
    """The ``dexi`` block, declared defaults applied (core/settings.py)."""

    account_id: str
    api_key: str
    run_ids: tuple[str, ...] | None
    dataset_ids: tuple[str, ...] | None
    download_files: bool
    execute_runs: bool
    files_dir: str
    result_stream_names: Mapping[str, str] | None
    strict_results: bool
