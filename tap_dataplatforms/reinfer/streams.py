"""Re:infer streams: projects, datasets -> streams and labellings, sources -> comments."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterable
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

import orjson
from singer_sdk.exceptions import FatalAPIError

from tap_dataplatforms.core.naming import NamesById
from tap_dataplatforms.core.partition import first_partition, in_partition
from tap_dataplatforms.core.readahead import PagePrefetch
from tap_dataplatforms.core.records import ConformedRecords, LeanRecordLoop
from tap_dataplatforms.core.timestamps import UTC, format_rfc3339
from tap_dataplatforms.reinfer import comments, schemas
from tap_dataplatforms.reinfer.client import (
    COMMENTS_PATH,
    DATASETS_PATH,
    LABELLINGS_PATH,
    PROJECTS_PATH,
    SOURCES_PATH,
    STREAMS_PATH,
    CursorPaginator,
    ReinferStream,
    configured_names,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from singer_sdk.helpers.types import Context, Record

#: The maximum page size of the comments endpoint (notes 5.4); larger is rejected.
COMMENTS_PAGE_SIZE = 256
#: Comment pages (bodies of 256 comments) a source read ahead may hold.
PREFETCH_PAGES = 48
#: How a label name given as parts is shown (the CLI's display form).
LABEL_SEPARATOR = " > "

# The schemas and their parts (schemas.py), under the names the streams use.
_COMMENT_FIELDS = schemas.COMMENT_FIELDS
_LABEL = schemas.LABEL
_LABELLING_GROUP = schemas.LABELLING_GROUP


def _normalise_label(label: Any) -> Any:
    if not isinstance(label, dict):
        return label
    name = label.get("name")
    if isinstance(name, list):
        parts = [str(p) for p in name]
    elif isinstance(name, str):
        parts = name.split(LABEL_SEPARATOR)
    else:
        return label
    label["name"] = LABEL_SEPARATOR.join(parts)
    label["name_parts"] = parts
    return label


class ProjectsStream(ReinferStream):
    """Projects (formerly organisations): the permission boundary."""

    name = "reinfer_projects"
    path = PROJECTS_PATH
    list_field = "projects"
    primary_keys = ("name",)
    schema = schemas.PROJECTS

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        # Projects have no parent to split by: under `partition` the first process reads
        # them, so that n processes emit each project once, as one would.
        if first_partition(self.common.partition):
            yield from super().get_records(context)


class _ConfiguredParent(ReinferStream):
    """A listing whose records open child partitions, restricted to configured names."""

    setting: str = ""

    @cached_property
    def wanted(self) -> list[str] | None:
        return configured_names(getattr(self.settings, self.setting))

    def is_wanted(self, record: Record) -> bool:
        """Configured (or all visible), and this process's share under ``partition``."""
        wanted = self.wanted
        if wanted is not None and f"{record.get('owner')}/{record.get('name')}" not in wanted:
            return False
        return in_partition(self.common.partition, str(record["id"]))

    def post_process(  # type: ignore[override]
        self, row: dict[str, Any], context: Context | None = None
    ) -> dict[str, Any] | None:
        # Each listed source or dataset is emitted by the one process that owns it, so
        # n partitioned syncs together hold each record once, as one full sync does.
        if not in_partition(self.common.partition, str(row["id"])):
            return None
        return super().post_process(row, context)

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        seen: set[str] = set()
        failures = len(self.runtime.failures)
        for record in super().get_records(context):
            seen.add(f"{record.get('owner')}/{record.get('name')}")
            yield record
        if self.wanted is None or len(self.runtime.failures) > failures:
            return
        for missing in (name for name in self.wanted if name not in seen):
            message = (
                f"{self.platform_title}: {missing} is not among the {self.list_field} "
                "this token can see"
            )
            self.runtime.record_failure(f"{self.setting} [{missing}]", message, streams=[self.name])
            self.logger.error("%s", message)


class DatasetsStream(_ConfiguredParent):
    """Datasets (models over sources); parents of streams, labellings and predictions."""

    name = "reinfer_datasets"
    path = DATASETS_PATH
    list_field = "datasets"
    setting = "datasets"
    primary_keys = ("id",)
    # Datasets name their timestamps differently from everything else (notes 9).
    timestamp_fields = ("created", "last_modified")
    schema = schemas.DATASETS

    def generate_child_contexts(
        self, record: Record, context: Context | None
    ) -> Iterable[dict[str, Any] | None]:
        if self.is_wanted(record):
            yield {
                "dataset_id": record["id"],
                "project": record.get("owner"),
                "dataset_name": record.get("name"),
                "source_ids": list(record.get("source_ids") or []),
            }


class SourcesStream(_ConfiguredParent):
    """Sources (collections of comments); parents of comments."""

    name = "reinfer_sources"
    path = SOURCES_PATH
    list_field = "sources"
    setting = "sources"
    primary_keys = ("id",)
    schema = schemas.SOURCES

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        comments = next(
            (c for c in self.child_streams if isinstance(c, CommentsStream) and c.selected),
            None,
        )
        if comments is None or comments.workers < 2:
            yield from super().get_records(context)
            return
        # The listing is small: read it whole, so the comments of the sources after the
        # one being emitted can be read meanwhile.
        records = list(super().get_records(context))
        children = [
            child
            for record in records
            for child in self.generate_child_contexts(record, context)
            if child is not None
        ]
        comments.start_prefetch(children)
        try:
            yield from records
        finally:
            comments.stop_prefetch()

    def generate_child_contexts(
        self, record: Record, context: Context | None
    ) -> Iterable[dict[str, Any] | None]:
        if self.is_wanted(record):
            # Keyed by the source's id alone: its bookmark survives a rename. The
            # project and name the comments route needs are looked up by id.
            comments = self.tap.streams.get(CommentsStream.name)
            if isinstance(comments, CommentsStream):
                comments.source_names.learn(record["id"], (record.get("owner"), record.get("name")))
            yield {"source_id": record["id"]}


class CommentsStream(LeanRecordLoop, ConformedRecords, ReinferStream):
    """Comments of each source, ascending by ``timestamp``: sorted, resumable per source.

    The window's upper end is fixed once per sync so every page sees the same window;
    the lower end is the source's bookmark (inclusive: boundary comments repeat and the
    key de-duplicates them). Only timestamps go into state, never a continuation.
    """

    name = "reinfer_comments"
    path = COMMENTS_PATH
    list_field = "comments"
    parent_stream_type = SourcesStream
    primary_keys = ("source_id", "id")
    replication_key = "timestamp"
    is_sorted = True
    # A comment out of order must not abort the whole sync: the bookmark then follows
    # the last comment read (a later sync re-reads rather than skips) and a warning
    # says so.
    check_sorted = False
    # One state partition per source context, which is the source's id alone (a stable
    # identity: renaming a source does not reset its bookmark): the SDK keeps sorted,
    # resumable bookmarks only when the state partition is the whole context.
    state_partitioning_keys = None
    parent_fields = ("source_id",)
    timestamp_fields = ()
    # A STATE after every full page: a killed sync re-reads at most one page per source.
    STATE_MSG_FREQUENCY = COMMENTS_PAGE_SIZE
    schema = schemas.COMMENTS

    @cached_property
    def source_names(self) -> NamesById[tuple[Any, Any]]:
        """Source id -> (project, name), from the sources listed in this sync."""
        return NamesById("source_id")

    def named(self, context: Context | None) -> dict[str, Any] | None:
        """The context with the project and name of its source, for URLs and labels."""
        if not context or "source_id" not in context or "source_name" in context:
            return dict(context) if context else None
        project, name = self.source_names.of(context) or (None, None)
        return {**context, "project": project, "source_name": name}

    def get_url(self, context: Context | None) -> str:
        return super().get_url(self.named(context))

    def partition_label(self, context: Context | None) -> str:
        return super().partition_label(self.named(context))

    @cached_property
    def window_end(self) -> str:
        now = dt.datetime.fromtimestamp(self.budget.clock.time(), tz=UTC)
        return format_rfc3339(now)

    # -- sources read ahead ----------------------------------------------------------------

    @property
    def workers(self) -> int:
        return self.common.max_concurrency

    def start_prefetch(self, contexts: list[dict[str, Any]]) -> None:
        """Read the comment pages of these sources ahead, in this order (the sync's)."""
        self.stop_prefetch()
        if len(contexts) < 2:
            return
        # Each source's first request is worked out here, in the sync's thread, with the
        # SDK's own start logic; the state it writes on the way is put back as it was, so
        # the STATE messages are those of a sync without read-ahead.
        state = self.stream_state
        snapshot = copy.deepcopy(state)
        try:
            firsts = {}
            for c in contexts:
                self.write_starting_replication_value(c)
                firsts[str(c["source_id"])] = (self.get_url(c), self.get_url_params(c, None), c)
        finally:
            state.clear()
            state.update(snapshot)
        self._first_requests = firsts
        self._prefetch = PagePrefetch(
            self._read_pages,
            list(self._first_requests),
            workers=min(self.workers, len(contexts)),
            depth=PREFETCH_PAGES,
            name="reinfer-pages",
        )

    def stop_prefetch(self) -> None:
        prefetch = self.__dict__.pop("_prefetch", None)
        if prefetch is not None:
            prefetch.close()

    def _read_pages(self, source_id: Any) -> Iterable[comments.PageRead]:
        """One source's pages, following ``continuation``: the workers only find the
        cursor and each comment's JSON text (a light scan), the sync decodes a comment
        when it must."""
        url, params, context = self._first_requests[str(source_id)]
        params = dict(params)
        previous: str | None = None
        while True:
            content, token = self._page(url, params, context)
            yield content
            if token is None:
                return
            if token == previous:
                raise FatalAPIError(
                    f"Re:infer: the `continuation` cursor did not advance on {url}; "
                    "stopping this partition instead of looping"
                )
            previous = token
            params = {"to_timestamp": params["to_timestamp"], "limit": params["limit"]}
            params["after"] = token

    def _page(
        self, url: str, params: dict[str, Any], context: dict[str, Any]
    ) -> tuple[comments.PageRead, str | None]:
        """One page and its cursor; a 2xx that is not JSON is fetched again, as every
        other request's is (and fails the partition after the last try)."""
        return self.call_read("GET", url, comments.read_page, params=params, context=context)

    def request_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        prefetch = self.__dict__.get("_prefetch")
        key = str((context or {}).get("source_id"))
        if prefetch is None or key not in prefetch:
            yield from super().request_records(context)
            return
        suffix = self._added_members(context)
        check = self._order_check(context)
        for content, raws in prefetch.pages(key):
            # EncodedRecords among them only when the lean loop asked for those (suffix)
            page = comments.page_records(content, raws, suffix, check)
            yield from cast("Iterator[dict[str, Any]]", page)

    def _added_members(self, context: Context | None) -> bytes | None:
        """What post-processing adds to a comment, as the JSON text that ends it, when
        the record loop takes comments encoded as sent (``encoded_records_wanted``) and
        the catalog's schema is the stream's own (the conformance to it is what
        ``comments.page_as_sent`` checks); else ``None``."""
        if not self.encoded_records_wanted or self.effective_schema != schemas.COMMENTS:
            return None
        if not context or "source_id" not in context:
            return None
        named = self.named(context) or {}
        members: list[tuple[str, Any]] = [
            (key, named[key]) for key in ("project", "source_name") if key in named
        ]
        members.append(("source_id", context["source_id"]))
        return b"".join(b"," + orjson.dumps(k) + b":" + orjson.dumps(v) for k, v in members) + b"}"

    def _order_check(self, context: Context | None) -> Callable[[str], None]:
        """What post-processing checks of each comment's ``timestamp``, for comments
        passed on as sent: a comment out of order is warned of (once)."""
        source_id = (context or {}).get("source_id")
        last = self._last_timestamp

        def check(stamp: str) -> None:
            previous = last.get(source_id)
            if previous is not None and stamp < previous:
                self._warn_out_of_order(context)
            last[source_id] = stamp

        return check

    def _warn_out_of_order(self, context: Context | None) -> None:
        self.runtime.warn_once(
            f"{self.platform_title}: comments of {self.partition_label(context)} are not in "
            "ascending timestamp order; the bookmark follows the last one read"
        )

    def get_new_paginator(self) -> CursorPaginator:
        return CursorPaginator("continuation", "comments", stop_on_empty=False)

    def get_url_params(
        self, context: Context | None, next_page_token: str | None
    ) -> dict[str, Any]:
        # requests percent-encodes the values, so a `+00:00` offset arrives as `%2B00:00`.
        params: dict[str, Any] = {"to_timestamp": self.window_end, "limit": COMMENTS_PAGE_SIZE}
        if next_page_token:
            params["after"] = next_page_token
        else:
            start = self.replication_start(context)
            if start is not None:
                params["from_timestamp"] = format_rfc3339(start)
        return params

    def post_process(self, row: dict[str, Any], context: Context | None = None) -> dict[str, Any]:
        # Worked out once per partition: every record of a partition comes with the same
        # context object (a new one for each partition).
        cached = self.__dict__.get("_named_for")
        if cached is not None and cached[0] is context:
            named = cached[1]
        else:
            named = self.named(context) or {}
            self.__dict__["_named_for"] = (context, named)
        for key in ("project", "source_name"):
            if key in named and row.get(key) is None:
                row[key] = named[key]
        row = comments.normalise(super().post_process(row, context))
        stamp = row.get("timestamp")
        previous = self._last_timestamp.get(row.get("source_id"))
        if stamp is not None and previous is not None and stamp < previous:
            self._warn_out_of_order(context)
        if stamp is not None:
            self._last_timestamp[row.get("source_id")] = stamp
        return row

    @cached_property
    def _last_timestamp(self) -> dict[Any, str]:
        return {}


class StreamsStream(ReinferStream):
    """Stream definitions of each dataset (never fetched or advanced: shared cursors)."""

    name = "reinfer_streams"
    path = STREAMS_PATH
    list_field = "streams"
    parent_stream_type = DatasetsStream
    primary_keys = ("id",)
    parent_fields = ("dataset_id",)
    schema = schemas.STREAMS


class LabellingsStream(ReinferStream):
    """Reviewed (and predicted) labels of each dataset's comments, one source at a time."""

    name = "reinfer_labellings"
    path = LABELLINGS_PATH
    list_field = "results"
    parent_stream_type = DatasetsStream
    primary_keys = ("dataset_id", "uid")
    timestamp_fields = ()
    schema = schemas.LABELLINGS

    def get_new_paginator(self) -> CursorPaginator:
        return CursorPaginator("after", "results", stop_on_empty=True)

    def get_url_params(
        self, context: Context | None, next_page_token: str | None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            "source_id": (context or {}).get("source_id"),
            "return_predictions": "true",
        }
        if next_page_token:
            params["after"] = next_page_token
        return params

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        # One request sequence per (dataset, source): a failure stays with that pair.
        for source_id in (context or {}).get("source_ids") or []:
            part = {**(context or {}), "source_id": source_id}
            for record in super().get_records(part):
                record["source_id"] = source_id
                yield record

    def post_process(self, row: dict[str, Any], context: Context | None = None) -> dict[str, Any]:
        comment = row.get("comment")
        if isinstance(comment, dict):
            row["uid"] = comment.get("uid")
            comments.normalise(comment)
        if context and "dataset_id" in context:
            row["dataset_id"] = context["dataset_id"]
        for group in row.get("labelling") or []:
            if isinstance(group, dict):
                for kind in ("assigned", "dismissed", "predicted"):
                    for label in group.get(kind) or []:
                        _normalise_label(label)
        return row


STREAMS = (
    ProjectsStream,
    DatasetsStream,
    SourcesStream,
    CommentsStream,
    StreamsStream,
    LabellingsStream,
)
