"""Datalinx streams: workspaces, what each workspace holds, and the organization's people.

Paths and fields are the project's assumptions where the docs are silent (see the API
notes); each path lives in exactly one place, here, for a real instance to correct.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

import requests
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError

from tap_dataplatforms.core.errors import PlatformAuthError, RouteMissingError
from tap_dataplatforms.core.naming import NamesById
from tap_dataplatforms.core.partition import first_partition, in_partition
from tap_dataplatforms.datalinx import schemas
from tap_dataplatforms.datalinx.client import (
    AdminStream,
    DatalinxStream,
    without_secrets,
)

if TYPE_CHECKING:
    from singer_sdk.helpers.types import Context, Record


class WorkspacesStream(DatalinxStream):
    """Workspaces of the organization (``datalinx.workspaces`` picks some by name).

    Under ``partition`` a workspace belongs to the process its id hashes to (doc: ``id``,
    ``ws_`` prefix), not its name: a workspace renamed in Datalinx stays where it was.
    A configured name that no workspace has has no id to hash; partition 0 reports it.
    """

    name = "datalinx_workspaces"
    path = "/workspaces"
    primary_keys = ("id",)
    written_schema = schemas.WORKSPACES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Workspace id -> name, of the workspaces listed in this sync.
        self.names: NamesById[str] = NamesById("workspace_id")

    def wanted(self) -> list[str] | None:
        names = self.settings.workspaces
        return list(dict.fromkeys(names)) if names else None

    def request_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        seen: set[str] = set()
        for record in super().request_records(context):
            seen.add(str(record.get("name")))
            yield record
        if not first_partition(self.common.partition):
            return
        for name in self.wanted() or []:
            if name not in seen:
                message = f"Datalinx: workspace '{name}' not found"
                self.runtime.record_failure(
                    f"{self.name} [workspace={name}]", message, streams=[self.name]
                )
                self.logger.error("Partition failed, continuing with the rest: %s", message)

    def post_process(
        self, row: dict[str, Any], context: Context | None = None
    ) -> dict[str, Any] | None:
        name = str(row.get("name"))
        wanted = self.wanted()
        if (wanted is not None and name not in wanted) or not in_partition(
            self.common.partition, workspace_key(row)
        ):
            return None
        return super().post_process(row, context)

    def get_child_context(self, record: Record, context: Context | None) -> dict[str, Any]:
        # The id is the partition (bookmarks); the name goes into X-Workspace and the
        # records, looked up by id (DatalinxStream.workspace_name).
        workspace_id = workspace_key(record)
        self.names.learn(workspace_id, str(record["name"]))
        adopt_bookmarks_by_name(self.tap, str(record["name"]), workspace_id)
        return {"workspace_id": workspace_id}


def workspace_key(row: dict[str, Any]) -> str:
    """What a workspace is partitioned and bookmarked by: its id, its name only where no
    id is sent."""
    return str(row.get("id") or row.get("name"))


def adopt_bookmarks_by_name(tap: Any, name: str, workspace_id: str) -> None:
    """Bookmarks were keyed by the workspace's name until they were keyed by its id (a
    renamed workspace must not be read again from the start). A state of that release
    holds partitions ``{"workspace": <name>}``, and only the workspace list can say which
    id a name has: when a workspace is listed, its name's partition becomes its id's,
    unless the id has one already."""
    bookmarks = tap.state.get("bookmarks") if isinstance(tap.state, dict) else None
    if not isinstance(bookmarks, dict):
        return
    old, new = {"workspace": name}, {"workspace_id": workspace_id}
    for stream_name, stream in bookmarks.items():
        if not stream_name.startswith("datalinx_"):
            continue
        partitions = stream.get("partitions") if isinstance(stream, dict) else None
        if not isinstance(partitions, list):
            continue
        contexts = [p.get("context") for p in partitions if isinstance(p, dict)]
        if new in contexts or old not in contexts:
            continue
        for partition in partitions:
            if isinstance(partition, dict) and partition.get("context") == old:
                partition["context"] = dict(new)


class ScopedStream(DatalinxStream):
    """A resource of one workspace, read with ``X-Workspace: <name>``."""

    parent_stream_type = WorkspacesStream
    workspace_scoped = True
    primary_keys = ("workspace", "id")

    def partition_label(self, context: Context | None) -> str:
        # Named as users know it: by the workspace's name, not its id.
        shown = dict(context or {})
        if "workspace_id" in shown:
            shown = {"workspace": self.workspace_name(context) or shown.pop("workspace_id")}
            shown.update({k: v for k, v in (context or {}).items() if k != "workspace_id"})
        return super().partition_label(shown)


class IncrementalScopedStream(ScopedStream):
    """Incremental on ``updated_at``, filtered on the client, bookmarked per workspace.

    The sort order is not documented, so the bookmark moves at the end of a workspace.
    """

    replication_key = "updated_at"
    is_sorted = False
    # The whole context, the workspace id: a workspace renamed in Datalinx keeps its
    # bookmark.
    state_partitioning_keys: ClassVar[list[str] | None] = None


class SourcesStream(IncrementalScopedStream):
    name = "datalinx_sources"
    path = "/sources"
    written_schema = schemas.SOURCES

    def post_process(
        self, row: dict[str, Any], context: Context | None = None
    ) -> dict[str, Any] | None:
        if "config" in row:
            row["config"] = without_secrets(row["config"])
        return super().post_process(row, context)


class SchemasStream(IncrementalScopedStream):
    name = "datalinx_schemas"
    path = "/schemas"
    written_schema = schemas.SCHEMAS

    def post_process(
        self, row: dict[str, Any], context: Context | None = None
    ) -> dict[str, Any] | None:
        if not row.get("id"):  # addressed by table name (pitfall 11)
            row["id"] = f"{row.get('schema_type')}:{row.get('table_name')}"
        return super().post_process(row, context)


class MappingsStream(IncrementalScopedStream):
    name = "datalinx_mappings"
    path = "/mappings"
    written_schema = schemas.MAPPINGS

    def post_process(
        self, row: dict[str, Any], context: Context | None = None
    ) -> dict[str, Any] | None:
        if not row.get("id"):  # mappings are addressed by target table name (doc)
            row["id"] = row.get("table_name")
        return super().post_process(row, context)


class PipelinesStream(IncrementalScopedStream):
    name = "datalinx_pipelines"
    path = "/pipelines"
    written_schema = schemas.PIPELINES


class PipelineRunsStream(ScopedStream):
    """Runs of every pipeline of a workspace, one partition per pipeline.

    A child of the workspace rather than of ``datalinx_pipelines``: that stream skips
    unchanged pipelines on incremental runs, and an unchanged pipeline can have new runs.
    """

    name = "datalinx_pipeline_runs"
    path = "/pipelines/{pipeline_id}/runs"
    written_schema = schemas.PIPELINE_RUNS

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        lister = self.tap.streams[PipelinesStream.name]
        assert isinstance(lister, PipelinesStream)
        if lister.route_missing:
            return
        try:
            ids = [str(p["id"]) for p in lister.request_records(context) if p.get("id")]
        except PlatformAuthError:
            raise
        except RouteMissingError as exc:  # no pipelines here: no runs either
            lister.skip_route(exc)
            return
        except (FatalAPIError, RetriableAPIError, requests.exceptions.RequestException) as exc:
            self._fail_partition(context, exc)
            return
        for pipeline_id in dict.fromkeys(ids):
            for row in super().get_records({**(context or {}), "pipeline_id": pipeline_id}):
                if not row.get("pipeline_id"):
                    row["pipeline_id"] = pipeline_id
                yield row


class AudiencesStream(IncrementalScopedStream):
    name = "datalinx_audiences"
    path = "/audiences"
    written_schema = schemas.AUDIENCES


class QueriesStream(IncrementalScopedStream):
    name = "datalinx_queries"
    path = "/queries"
    written_schema = schemas.QUERIES


class AlertsStream(IncrementalScopedStream):
    name = "datalinx_alerts"
    path = "/alerts"
    written_schema = schemas.ALERTS


class OrganizationStream(AdminStream):
    """Organization level: under ``partition`` only the first process reads it, so that
    the processes together deliver each record once."""

    primary_keys = ("id",)

    def request_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        if not first_partition(self.common.partition):
            return
        yield from super().request_records(context)


class UsersStream(OrganizationStream):
    name = "datalinx_users"
    path = "/users"
    written_schema = schemas.USERS


class RolesStream(OrganizationStream):
    name = "datalinx_roles"
    path = "/roles"
    written_schema = schemas.ROLES


class ServiceAccountsStream(OrganizationStream):
    name = "datalinx_service_accounts"
    path = "/service-accounts"  # the docs' doubled `/api/api/` is taken for a slip
    written_schema = schemas.SERVICE_ACCOUNTS


STREAMS: tuple[type[DatalinxStream], ...] = (
    WorkspacesStream,
    SourcesStream,
    SchemasStream,
    MappingsStream,
    PipelinesStream,
    PipelineRunsStream,
    AudiencesStream,
    QueriesStream,
    AlertsStream,
    UsersStream,
    RolesStream,
    ServiceAccountsStream,
)
