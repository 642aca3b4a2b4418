"""The tables of the next datasets, and their variables, read ahead while one is emitted.

Metadata is many small requests: per dataset one listing of its tables, per table one of
its variables. A sequential sync waits for each round trip in turn. Here each dataset's
requests are made by a worker, in exactly the order a sequential sync makes them (a page
of tables, the variables of each of its tables, the next page of tables, ...), up to
``max_concurrency`` datasets at a time and always inside the Redivis budget. The sync
takes the answers in the same order; records, their order and every failure are those of
a sequential sync. A partition the workers did not read (a table left out by a stream
map, say) is simply read directly when the sync asks for it.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any, cast

from singer_sdk.mapper import SameRecordTransform

from tap_dataplatforms.core.readahead import PagePrefetch

if TYPE_CHECKING:
    import requests

    from tap_dataplatforms.redivis.client import RedivisStream

#: Answers (pages of tables or variables) one dataset read ahead may hold.
DEPTH = 32
_END = object()
TABLES, VARIABLES = "tables", "variables"
Tag = tuple[str, Any]


def read_ahead_fits(datasets: Any, tables: Any) -> bool:
    """Whether a read-ahead asks exactly what the sync will: tables are synced (for
    their records or their variables') and no stream map filters a dataset or a table
    (a filtered record has no children synced)."""
    return bool(
        (tables.selected or tables.has_selected_descendents)
        and all(
            len(stream.stream_maps) == 1 and type(stream.stream_maps[0]) is SameRecordTransform
            for stream in (datasets, tables)
        )
    )


class MetadataReadAhead:
    """Tables (and variables) of the datasets ``contexts``, in the sync's order."""

    def __init__(self, tables: RedivisStream, contexts: list[dict[str, Any]], workers: int) -> None:
        self._tables = tables
        # Variables are read ahead only when the sync will read them.
        self._variables: RedivisStream | None = next(
            (
                cast("RedivisStream", c)
                for c in tables.child_streams
                if c.selected or c.has_selected_descendents
            ),
            None,
        )
        self._streams = [s for s in (tables, self._variables) if s is not None]
        self._contexts = contexts
        self._next = 0  # contexts before this one were asked for, or passed over
        self._feed: Generator[Any, None, None] | None = None
        self._pending: tuple[Tag, Any] | None = None
        self._prefetch = PagePrefetch(
            self._read_dataset,
            list(range(len(contexts))),
            workers=workers,
            depth=DEPTH,
            name="redivis-metadata",
        )
        for stream in self._streams:  # their request_records take the answers from here
            stream.__dict__["_read_ahead"] = self

    # -- workers ------------------------------------------------------------------------

    def _read_dataset(self, index: int) -> Iterator[tuple[Tag, Any]]:
        """One dataset's answers in the order a sequential sync asks for them."""
        context = self._contexts[index]
        tables_tag: Tag = (TABLES, index)
        for response, records, failure in self._pages(self._tables, context):
            yield tables_tag, response if failure is None else failure
            if failure is not None:
                return
            if self._variables is not None:
                for record in records:
                    child = dict(self._tables.get_child_context(record, context) or {})
                    tag: Tag = (VARIABLES, child.get("table_reference"))
                    for page, _, error in self._pages(self._variables, child):
                        yield tag, page if error is None else error
                    yield tag, _END
        yield tables_tag, _END

    @staticmethod
    def _pages(
        stream: RedivisStream, context: dict[str, Any]
    ) -> Iterator[tuple[Any, list[dict[str, Any]], BaseException | None]]:
        """(answer, its records, None) per page, as the SDK's ``request_records`` pages;
        (None, [], error) for a request that failed, which ends the partition."""
        paginator = stream.get_new_paginator()
        while not paginator.finished:
            try:
                prepared = stream.prepare_page_request(context, paginator)
                response = stream.send_page(prepared, context)
            except Exception as exc:  # raised to the sync where it would have met it
                yield None, [], exc
                return
            records: list[dict[str, Any]] = []
            broken = False
            try:
                records.extend(stream.parse_response(response))
            except Exception:  # the sync parses the page too and meets the same error
                broken = True
            yield response, records, None
            if broken or (not records and not paginator.continue_if_empty(response)):
                return
            try:
                paginator.advance(response)
            except Exception as exc:
                yield None, [], exc
                return

    # -- the sync -----------------------------------------------------------------------

    def _take(self) -> tuple[Tag, Any] | None:
        if self._pending is not None:
            item, self._pending = self._pending, None
            return item
        if self._feed is None:
            return None
        return next(self._feed, None)

    def tables(self, context: dict[str, Any]) -> Iterator[requests.Response] | None:
        """The answers for one dataset's tables, or ``None``: read them directly."""
        for index in range(self._next, len(self._contexts)):
            if self._contexts[index] == context:
                break
        else:
            return None
        self._next = index + 1
        if self._feed is not None:
            self._feed.close()
        self._feed = cast("Generator[Any, None, None]", self._prefetch.pages(index))
        self._pending = None
        return self._answers((TABLES, index))

    def variables(self, context: dict[str, Any]) -> Iterator[requests.Response] | None:
        """The answers for one table's variables, or ``None``: read them directly."""
        tag: Tag = (VARIABLES, context.get("table_reference"))
        while True:
            item = self._take()
            if item is None:
                return None
            if item[0] == tag:
                self._pending = item
                return self._answers(tag)
            if item[0][0] != VARIABLES:  # the dataset's next page of tables: not read ahead
                self._pending = item
                return None
            # variables the sync does not ask for (its table was left out): dropped

    def _answers(self, tag: Tag) -> Iterator[requests.Response]:
        while True:
            item = self._take()
            if item is None:
                return
            if item[0] != tag:
                if item[0][0] == VARIABLES and tag[0] == TABLES:
                    continue  # variables of a table the sync passed over
                self._pending = item
                return
            if item[1] is _END:
                return
            if isinstance(item[1], BaseException):
                raise item[1]
            yield item[1]

    def close(self) -> None:
        for stream in self._streams:
            stream.__dict__.pop("_read_ahead", None)
        if self._feed is not None:
            self._feed.close()
        self._feed = None
        self._pending = None
        self._prefetch.close()
