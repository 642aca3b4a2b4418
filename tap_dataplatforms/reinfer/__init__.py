"""Re:infer / Communications Mining: projects, datasets, sources, comments, streams, labellings."""

from singer_sdk import typing as th

from tap_dataplatforms.core.config import PlatformSpec, budget_setting, url_setting

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
        description="`project/dataset` names for streams and labellings (default: all visible).",
    ),
    budget_setting(10, "requests per second"),
)

PLATFORM = PlatformSpec(
    key="reinfer",
    title="Re:infer",
    settings=SETTINGS,
    credential_groups=(("api_url", "token"),),
)
