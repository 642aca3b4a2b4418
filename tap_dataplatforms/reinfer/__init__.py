"""Re:infer / Communications Mining: projects, datasets, sources, comments, streams, labellings,
predictions."""

from __future__ import annotations

from typing import Any

from tap_dataplatforms.core.config import PlatformSpec
from tap_dataplatforms.core.http import connection_check
from tap_dataplatforms.reinfer.client import CHECK_PATH
from tap_dataplatforms.reinfer.predictions import PredictionsStream
from tap_dataplatforms.reinfer.settings import SETTINGS, ReinferSettings
from tap_dataplatforms.reinfer.streams import STREAMS as LISTING_STREAMS
from tap_dataplatforms.reinfer.streams import CommentsStream

STREAMS = (*LISTING_STREAMS, PredictionsStream)


def migrate_state(state: dict[str, Any]) -> None:
    """Comment bookmarks were keyed by the source's id, project and name until names were
    dropped from the key (a renamed source must not be read again from the start): an
    old partition becomes the source id's, the newest bookmark winning."""
    bookmarks = state.get("bookmarks")
    stream = bookmarks.get(CommentsStream.name) if isinstance(bookmarks, dict) else None
    if not isinstance(stream, dict) or not isinstance(stream.get("partitions"), list):
        return
    partitions = stream["partitions"]
    by_source: dict[Any, dict[str, Any]] = {}
    kept: list[dict[str, Any]] = []
    for partition in partitions:
        context = partition.get("context") if isinstance(partition, dict) else None
        if not isinstance(context, dict) or "source_id" not in context:
            kept.append(partition)
            continue
        partition["context"] = {"source_id": context["source_id"]}
        previous = by_source.get(context["source_id"])
        if previous is None:
            by_source[context["source_id"]] = partition
            kept.append(partition)
        elif str(partition.get("replication_key_value") or "") > str(
            previous.get("replication_key_value") or ""
        ):
            kept[kept.index(previous)] = partition
            by_source[context["source_id"]] = partition
    stream["partitions"] = kept


PLATFORM = PlatformSpec(
    key="reinfer",
    title="Re:infer",
    settings=SETTINGS,
    settings_class=ReinferSettings,
    credential_groups=(("api_url", "token"),),
    streams=STREAMS,
    # The token's user on the tenant endpoint: proves host, prefix and token.
    check=connection_check("reinfer_sources", CHECK_PATH),
    migrate_state=migrate_state,
)
