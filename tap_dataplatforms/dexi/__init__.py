"""Dexi.io: runs, executions, results per run, dataset rows, files."""

from singer_sdk import typing as th

from tap_dataplatforms.core.config import PlatformSpec, budget_setting, url_setting

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
    budget_setting(75, "GET requests per second; writes and file downloads use 15/s"),
)

PLATFORM = PlatformSpec(
    key="dexi",
    title="Dexi",
    settings=SETTINGS,
    credential_groups=(("account_id", "api_key"),),
)
