"""Redivis metadata streams: datasets -> tables -> variables."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from singer_sdk import typing as th

from tap_dataplatforms.core.partition import in_partition
from tap_dataplatforms.redivis import schemas
from tap_dataplatforms.redivis.client import RedivisStream
from tap_dataplatforms.redivis.prefetch import MetadataReadAhead, read_ahead_fits

if TYPE_CHECKING:
    import requests
    from singer_sdk.helpers.types import Context, Record

TIMESTAMP = th.DateTimeType
BELOW_METADATA_ACCESS = frozenset({"none", "overview"})


class DatasetsStream(RedivisStream):
    """Datasets of each configured organization and user."""

    name = "redivis_datasets"
    path = "/{owner_kind}/{owner}/datasets"
    primary_keys = ("id",)
    schema = schemas.DATASETS

    @property
    def partitions(self) -> list[dict[str, Any]]:
        owners = [
            ("organizations", name) for name in dict.fromkeys(self.settings.organizations or ())
        ]
        owners += [("users", name) for name in dict.fromkeys(self.settings.users or ())]
        return [{"owner_kind": kind, "owner": name} for kind, name in owners]

    def request_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        if not context:  # no organization or user configured: nothing to list
            return []
        return super().request_records(context)

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        tables = next((c for c in self.child_streams if isinstance(c, TablesStream)), None)
        workers = self.common.max_concurrency
        if not context or tables is None or workers < 2 or not read_ahead_fits(self, tables):
            yield from super().get_records(context)
            return
        # The listing is small: read it whole, so that the tables (and variables) of the
        # datasets after the one being emitted can be read meanwhile.
        records = list(super().get_records(context))
        contexts = [
            child
            for record in records
            if self.owns(record)
            for child in [self.tables_context(record)]
            if child is not None
        ]
        ahead = MetadataReadAhead(tables, contexts, workers)
        try:
            yield from records
        finally:
            ahead.close()

    def owns(self, row: dict[str, Any]) -> bool:
        # Under `partition` a dataset, and with it its tables and variables, belongs to
        # one process: every process lists the owners, each keeps its share.
        return in_partition(self.common.partition, str(row.get("id")))

    def post_process(  # type: ignore[override]
        self, row: dict[str, Any], context: Context | None = None
    ) -> dict[str, Any] | None:
        if not self.owns(row):
            return None
        return super().post_process(row, context)

    @staticmethod
    def tables_context(record: Record) -> dict[str, Any] | None:
        """The tables partition of a dataset; none below metadata access, which listing
        tables needs (the dataset says what the caller has)."""
        if record.get("accessLevel") in BELOW_METADATA_ACCESS:
            return None
        return {"dataset_reference": record["qualifiedReference"], "dataset_id": record["id"]}

    def generate_child_contexts(
        self, record: Record, context: Context | None
    ) -> Iterable[dict[str, Any] | None]:
        child = self.tables_context(record)
        if child is None:
            self.logger.info(
                "Not listing tables of %s: your access level is '%s'",
                record.get("qualifiedReference"),
                record.get("accessLevel"),
            )
            return
        yield child


class TablesStream(RedivisStream):
    """Tables of each dataset."""

    name = "redivis_tables"
    path = "/datasets/{dataset_reference}/tables"
    primary_keys = ("qualifiedReference",)
    parent_stream_type = DatasetsStream
    parent_fields = ("dataset_id", "dataset_reference")
    schema = schemas.TABLES

    def get_child_context(self, record: Record, context: Context | None) -> dict[str, Any]:
        return {"table_reference": record["qualifiedReference"], "table_id": record["id"]}

    def read_ahead_answers(self, context: Context | None) -> Iterator[requests.Response] | None:
        ahead = self.__dict__.get("_read_ahead")
        return ahead.tables(dict(context)) if ahead is not None and context else None


class VariablesStream(RedivisStream):
    """Variables (columns) of each table."""

    name = "redivis_variables"
    path = "/tables/{table_reference}/variables"
    primary_keys = ("table_reference", "name")
    parent_stream_type = TablesStream
    page_size = 1000
    parent_fields = ("table_reference", "table_id")
    schema = schemas.VARIABLES

    def read_ahead_answers(self, context: Context | None) -> Iterator[requests.Response] | None:
        ahead = self.__dict__.get("_read_ahead")
        return ahead.variables(dict(context)) if ahead is not None and context else None


STREAMS = (DatasetsStream, TablesStream, VariablesStream)
