"""Re:infer predictions: what a dataset's model says about every comment of its sources.

The labellings listing holds reviewed comments only; the model scores any comment given
by uid (notes 5.6, client). Per dataset: ``POST .../labellers`` lists the trained model
versions and the newest is used; per source of the dataset: the comments are read as
``reinfer_comments`` reads them (ascending ``timestamp``, from the bookmark) and their uids
are sent to ``predict-comments`` in batches. One record per comment scored, keyed by
dataset, uid and model version.

State: one partition per (dataset, source, model version), bookmarked on the comment's
``timestamp``. Records leave in comment order, so the stream is sorted and a killed sync
resumes at the last STATE, re-reading at most one batch. A newer model version is a new
partition: every comment is scored again by it, from ``start_date``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from singer_sdk.exceptions import FatalAPIError

from tap_dataplatforms.core.errors import PartitionError, PlatformAuthError, RouteMissingError
from tap_dataplatforms.core.http import TRANSIENT_ERRORS, json_type, response_json
from tap_dataplatforms.core.redact import redact
from tap_dataplatforms.core.timestamps import UTC, format_rfc3339
from tap_dataplatforms.reinfer import schemas
from tap_dataplatforms.reinfer.client import (
    COMMENTS_PATH,
    LABELLERS_PATH,
    PREDICT_PATH,
    SOURCES_PATH,
    CursorPaginator,
    ReinferStream,
)
from tap_dataplatforms.reinfer.comments import rfc3339
from tap_dataplatforms.reinfer.streams import (
    COMMENTS_PAGE_SIZE,
    CommentsStream,
    DatasetsStream,
    _normalise_label,
)

if TYPE_CHECKING:
    import requests
    from singer_sdk.helpers.types import Context

#: uids per predict-comments request: what the official CLI sends (a query page of 512);
#: the notes assume at most 1024 are accepted.
PREDICT_BATCH_UIDS = 512
#: A batch the platform refuses as too large is halved, down to this size at the least.
MIN_PREDICT_BATCH_UIDS = 64

#: The routes this stream calls, by how their paths end (for request metrics).
_ROUTES = (
    (PREDICT_PATH, "/predict-comments"),
    (LABELLERS_PATH, "/labellers"),
    (COMMENTS_PATH, "/comments"),
    (SOURCES_PATH, "/sources"),
)


class PredictionsStream(ReinferStream):
    """The newest model's predictions for every comment of each dataset's sources."""

    name = "reinfer_predictions"
    path = PREDICT_PATH
    parent_stream_type = DatasetsStream
    primary_keys = ("dataset_id", "uid", "model_version")
    replication_key = "timestamp"
    is_sorted = True
    # Out-of-order comments must not abort the sync: the bookmark follows the last one.
    check_sorted = False
    # The state partition is the whole (dataset, source, model version) context.
    state_partitioning_keys = None
    timestamp_fields = ()
    # A STATE after about every batch: a killed sync scores at most one batch again.
    STATE_MSG_FREQUENCY = PREDICT_BATCH_UIDS
    schema = schemas.PREDICTIONS

    @property
    def window_end(self) -> str:
        """The upper end of the comment window: the one ``reinfer_comments`` uses, fixed
        once per sync, so both streams read the same comments."""
        comments = self.tap.streams.get(CommentsStream.name)
        if isinstance(comments, CommentsStream):
            return comments.window_end
        return self._own_window_end

    @cached_property
    def _own_window_end(self) -> str:
        return format_rfc3339(dt.datetime.fromtimestamp(self.budget.clock.time(), tz=UTC))

    @cached_property
    def batch_size(self) -> list[int]:
        """The uids per request, shrunk for the rest of the sync when one is refused."""
        return [PREDICT_BATCH_UIDS]

    # -- partitions: one per source of the dataset, at its newest model version --------

    def sync_contexts(self, context: Context | None) -> Iterable[Context] | None:
        if not context or "source_ids" not in context:
            return None
        version = self._newest_model(context)
        if version is None:
            return []
        return [
            {
                "dataset_id": context["dataset_id"],
                "project": context.get("project"),
                "dataset_name": context.get("dataset_name"),
                "source_id": source_id,
                "model_version": version,
            }
            for source_id in context["source_ids"]
        ]

    def get_replication_key_signpost(self, context: Context | None = None) -> Any:
        # The dataset's context only hands out the source partitions: no state of its own.
        if context and "source_ids" in context:
            return None
        return super().get_replication_key_signpost(context)

    def metric_endpoint(self, response: requests.Response) -> str:
        # This stream calls four routes; each request's metric names its own.
        path = urlsplit(response.url or "").path
        for template, tail in _ROUTES:
            if path.endswith(tail):
                return template
        return super().metric_endpoint(response)

    def _url(self, template: str, **values: Any) -> str:
        return self.url_base + template.format(
            **{k: quote(str(v), safe="") for k, v in values.items()}
        )

    def _newest_model(self, context: Context) -> int | None:
        """The highest trained model version of the dataset; ``None`` without a model or
        when the listing fails (the failure recorded against the dataset)."""
        if self.route_missing:
            return None
        label = f"{self.name} [{context.get('project')}/{context.get('dataset_name')}]"
        url = self._url(
            LABELLERS_PATH, project=context.get("project"), dataset_name=context.get("dataset_name")
        )
        try:
            body = response_json(self.call("POST", url, json_body={}, context=context))
            listed = body.get("labellers") if isinstance(body, dict) else None
            if not isinstance(listed, list):
                raise PartitionError(
                    f"{self.platform_title}: the answer of POST {url} holds no `labellers` list"
                )
        except RouteMissingError as exc:
            self.skip_route(exc)
            return None
        except PlatformAuthError:
            raise
        except (FatalAPIError, *TRANSIENT_ERRORS) as exc:
            message = redact(str(exc) or type(exc).__name__)
            self.runtime.record_failure(label, message, streams=[self.name])
            self.logger.error("Partition failed, continuing with the rest: %s: %s", label, message)
            return None
        versions = [
            item["version"]
            for item in listed
            if isinstance(item, dict) and type(item.get("version")) is int
        ]
        if not versions:
            self.logger.info("%s: no trained model, so no predictions", label)
            return None
        return max(versions)

    @cached_property
    def _sources(self) -> dict[str, tuple[str, str]]:
        """``owner`` and ``name`` of every visible source by id: the comments route
        names a source, a dataset lists ids."""
        body = response_json(self.call("GET", self._url(SOURCES_PATH)))
        listed = body.get("sources") if isinstance(body, dict) else None
        return {
            str(s["id"]): (str(s.get("owner")), str(s.get("name")))
            for s in listed or []
            if isinstance(s, dict) and "id" in s
        }

    # -- records -------------------------------------------------------------------------

    def request_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        part = dict(context or {})
        source = self._sources.get(str(part.get("source_id")))
        if source is None:
            raise PartitionError(
                f"{self.platform_title}: source {part.get('source_id')} of "
                f"{part.get('project')}/{part.get('dataset_name')} is not among the sources "
                "this token can see"
            )
        url = self._url(COMMENTS_PATH, project=source[0], source_name=source[1])
        start = self.replication_start(part)

        def page(token: str | None) -> dict[str, Any]:
            params: dict[str, Any] = {"to_timestamp": self.window_end, "limit": COMMENTS_PAGE_SIZE}
            if token is not None:
                params["after"] = token
            elif start is not None:
                params["from_timestamp"] = format_rfc3339(start)
            return params

        # As reinfer_comments pages them: until ``continuation`` is null (an empty page is
        # not the end), a cursor that does not advance failing the partition.
        paginator = CursorPaginator("continuation", "comments", stop_on_empty=False)
        batch: list[dict[str, Any]] = []
        for response in self.pages(url, page, paginator=paginator, context=part):
            comments = self._listed(response, "comments", f"GET {url}")
            batch += (c for c in comments if isinstance(c, dict))
            while len(batch) >= self.batch_size[0]:
                size = self.batch_size[0]
                yield from self._predict(part, batch[:size])
                del batch[:size]
        if batch:
            yield from self._predict(part, batch)

    def _listed(self, response: requests.Response, member: str, request: str) -> list[Any]:
        """The list ``member`` of a JSON object answer; anything else fails the partition."""
        body = response_json(response)
        listed = body.get(member) if isinstance(body, dict) else None
        if not isinstance(listed, list):
            raise PartitionError(
                f"{self.platform_title}: the answer of {request} holds a JSON "
                f"{json_type(listed)} where the `{member}` list belongs"
            )
        return listed

    def _predict(
        self, part: dict[str, Any], comments: list[dict[str, Any]]
    ) -> Iterable[dict[str, Any]]:
        """The model's predictions for these comments, in their order (the answer is
        matched by uid: it may leave out comments the model did not score)."""
        uids = [str(c.get("uid") or f"{part['source_id']}.{c.get('id')}") for c in comments]
        url = self._url(
            PREDICT_PATH,
            project=part.get("project"),
            dataset_name=part.get("dataset_name"),
            model_version=part["model_version"],
        )
        try:
            response = self.call(
                "POST", url, json_body={"uids": uids, "threshold": "auto"}, context=part
            )
        except PartitionError as exc:
            # The largest batch is assumed (notes: <= 1024): a 400 or 413 on a batch
            # that can still shrink is taken as "too many", and the rest of the sync
            # sends half as many uids per request.
            half = len(comments) // 2
            if exc.status not in (400, 413) or half < MIN_PREDICT_BATCH_UIDS:
                raise
            self.batch_size[0] = min(self.batch_size[0], half)
            self.logger.warning(
                "%s: predict-comments refused %d uids (%s); sending %d per request",
                self.platform_title,
                len(comments),
                exc,
                half,
            )
            rest = comments
            while rest:
                size = self.batch_size[0]
                yield from self._predict(part, rest[:size])
                rest = rest[size:]
            return
        listed = self._listed(response, "predictions", f"POST {url}")
        by_uid = {str(p.get("uid")): p for p in listed if isinstance(p, dict)}
        missing = 0
        for uid, comment in zip(uids, comments, strict=True):
            prediction = by_uid.get(uid)
            if prediction is None:
                missing += 1
                continue
            record = dict(prediction)
            record.update(
                dataset_id=part["dataset_id"],
                uid=uid,
                model_version=part["model_version"],
                source_id=part["source_id"],
                comment_id=comment.get("id"),
                timestamp=rfc3339(comment.get("timestamp")),
            )
            for label in record.get("labels") or []:
                _normalise_label(label)
            yield record
        if missing:
            self.runtime.count(self.platform, "comments_without_prediction", missing)
            self.runtime.warn_once(
                f"{self.platform_title}: the model left some comments of "
                f"{self.partition_label(part)} without a prediction; they have no record"
            )
