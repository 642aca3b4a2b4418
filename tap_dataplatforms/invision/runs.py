"""``invision_dataflow_runs``: start each data flow, poll its run, one record per run.

The Data Flow Execution API has a start call and a status call, nothing else: no run
listing, no cancel, no timestamps (docs.profitbase.com, "Execution of Data Flows using
an API"). Starting is a side effect and not idempotent, so a start is sent again only
when the connection was never made; every other start failure fails that data flow.
``await=true`` would hold the request open for up to hours, so runs are polled instead.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TYPE_CHECKING, Any

import requests
from singer_sdk import typing as th
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError

from tap_dataplatforms.core.config import common_value
from tap_dataplatforms.core.errors import PartitionError, PlatformAuthError
from tap_dataplatforms.core.http import response_json
from tap_dataplatforms.core.partition import in_partition
from tap_dataplatforms.core.redact import redact
from tap_dataplatforms.core.timestamps import UTC, format_rfc3339
from tap_dataplatforms.invision.client import InVisionStream, encode_segment

if TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

FINAL_STATUSES = ("Succeeded", "Failed")
TIMED_OUT = "TimedOut"
KNOWN_STATUSES = {s.lower(): s for s in ("Pending", "Running", *FINAL_STATUSES)}
#: The poll interval grows by this factor after each poll, up to ``MAX_POLL_INTERVAL``.
POLL_BACKOFF = 1.5
MAX_POLL_INTERVAL = 60.0
START_PATH = "/api/pub/v1/dataflows/{dataflow_id}/start"
STATUS_PATH = "/api/pub/v1/dataflows/{dataflow_id}/runs/{run_id}/status"


class RunFailed(Exception):
    """Why one data flow's partition failed (the run record may still be emitted)."""


def _field(body: Any, name: str) -> Any:
    """A response field by name, whatever the serializer's casing."""
    if not isinstance(body, dict):
        return None
    lowered = {str(k).lower(): v for k, v in body.items()}
    return lowered.get(name.lower())


def _status(body: Any) -> str:
    value = _field(body, "status")
    if not isinstance(value, str) or not value:
        raise RetriableAPIError(f"InVision: no run status in the answer: {str(body)[:200]}")
    return KNOWN_STATUSES.get(value.lower(), value)


def _never_sent(exc: requests.exceptions.ConnectionError) -> bool:
    """True when the connection itself failed (refused, DNS), so nothing reached InVision."""
    cause: Any = exc.args[0] if exc.args else None
    reason = getattr(cause, "reason", cause)
    return type(reason).__name__ in {"NewConnectionError", "NameResolutionError"}


class DataflowRunsStream(InVisionStream):
    """One record per run the tap started, with its final (or last seen) status."""

    name = "invision_dataflow_runs"
    path = START_PATH
    primary_keys = ("run_id",)
    schema = th.PropertiesList(
        th.Property("run_id", th.StringType, required=True),
        th.Property("dataflow_id", th.StringType, required=True),
        th.Property(
            "status", th.StringType, description="Pending, Running, Succeeded, Failed, TimedOut."
        ),
        th.Property("started_at", th.DateTimeType, description="Tap clock at the start answer."),
        th.Property(
            "finished_at",
            th.DateTimeType,
            description="Tap clock at the first poll that saw a final status (an upper bound).",
        ),
        th.Property("duration_seconds", th.NumberType),
        th.Property("polls", th.IntegerType, description="Status calls made."),
        th.Property("timed_out", th.BooleanType),
    ).to_dict()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stopping = threading.Event()

    def dataflow_ids(self) -> list[str]:
        ids = dict.fromkeys(str(i) for i in self.settings.get("dataflow_ids") or [])
        return [i for i in ids if in_partition(self.config.get("partition"), i)]

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        ids = self.dataflow_ids()
        if not self.settings.get("trigger_dataflows"):
            if ids:
                self.logger.info(
                    "Not starting %d InVision data flow(s): trigger_dataflows is false", len(ids)
                )
            return
        if self.ABORT_AT_RECORD_COUNT is not None:
            # --test and dry runs must never start a data flow.
            self.logger.info("Not starting InVision data flows in a test run")
            return
        if not ids:
            return
        workers = max(1, min(int(common_value(self.config, "max_concurrency")), len(ids)))
        self._stopping = threading.Event()
        pool = ThreadPoolExecutor(workers, thread_name_prefix="invision-run")
        try:
            futures = [pool.submit(self.run_dataflow, i) for i in ids]
            for future in as_completed(futures):
                record = future.result()
                if record is not None:
                    yield record
        finally:
            # Normally every run is done here; after an error or an interruption the
            # other workers stop at their next poll instead of waiting out the timeout.
            self._stopping.set()
            pool.shutdown(wait=True, cancel_futures=True)

    # -- one data flow --------------------------------------------------------------

    def _fail(self, dataflow_id: str, message: str) -> None:
        label = self.partition_label({"dataflow_id": dataflow_id})
        message = redact(message)
        self.runtime.record_failure(label, message)
        self.logger.error("Partition failed, continuing with the rest: %s: %s", label, message)

    def run_dataflow(self, dataflow_id: str) -> dict[str, Any] | None:
        """Start one data flow and follow its run; ``None`` when it could not start."""
        try:
            run_id, status = self.start(dataflow_id)
        except PlatformAuthError:
            raise
        except (FatalAPIError, RetriableAPIError, requests.exceptions.RequestException) as exc:
            self._fail(dataflow_id, f"could not start data flow {dataflow_id}: {exc}")
            return None
        clock = self.budget.clock
        started_at = clock.time()
        self.logger.info("InVision: data flow %s started, run %s (%s)", dataflow_id, run_id, status)
        deadline = clock.monotonic() + float(self.settings["await_timeout_seconds"])
        interval = float(self.settings["poll_interval_seconds"])
        polls = 0
        problem: str | None = None
        while status not in FINAL_STATUSES:
            remaining = deadline - clock.monotonic()
            if remaining <= 0 or self._stopping.is_set():
                break
            clock.sleep(min(interval, remaining))
            try:
                previous, status = status, self.poll(dataflow_id, run_id)
            except PlatformAuthError:
                raise
            except (FatalAPIError, RetriableAPIError, requests.exceptions.RequestException) as exc:
                problem = f"lost track of run {run_id} after {polls} poll(s): {exc}"
                break
            polls += 1
            if status != previous:
                self.logger.info("InVision: data flow %s run %s: %s", dataflow_id, run_id, status)
            interval = min(interval * POLL_BACKOFF, MAX_POLL_INTERVAL)
        finished = status in FINAL_STATUSES
        if not finished and problem is None and self._stopping.is_set():
            problem = f"the sync stopped while run {run_id} was {status}"
        finished_at = clock.time() if finished else None
        timed_out = not finished and problem is None
        if timed_out:
            problem = (
                f"run {run_id} still {status} after {self.settings['await_timeout_seconds']}s "
                "(await_timeout_seconds); it keeps running in InVision"
            )
            status = TIMED_OUT
        elif status == "Failed":
            problem = f"run {run_id} ended with status Failed"
        if problem is not None:
            self._fail(dataflow_id, f"{self.platform_title}: data flow {dataflow_id}: {problem}")
        return {
            "run_id": run_id,
            "dataflow_id": dataflow_id,
            "status": status,
            "started_at": _rfc3339(started_at),
            "finished_at": None if finished_at is None else _rfc3339(finished_at),
            "duration_seconds": (
                None if finished_at is None else round(finished_at - started_at, 3)
            ),
            "polls": polls,
            "timed_out": timed_out,
        }

    def _prepared(self, method: str, path: str, **kwargs: Any) -> requests.PreparedRequest:
        return self.build_prepared_request(
            method=method, url=self.url_base + path, headers=self.http_headers, **kwargs
        )

    def start(self, dataflow_id: str) -> tuple[str, str]:
        """``POST .../start`` without ``await``: the run id and its first status."""
        path = START_PATH.format(dataflow_id=encode_segment(dataflow_id))
        prepared = self._prepared("POST", path)
        attempt = 0
        retried_media_type = False
        while True:
            attempt += 1
            try:
                response = self._request(prepared, {"dataflow_id": dataflow_id})
            except requests.exceptions.ConnectionError as exc:
                if not _never_sent(exc) or attempt >= self.backoff_max_tries():
                    raise
                self.budget.clock.sleep(self._expo_wait(attempt))
                continue
            except PartitionError as exc:
                # A known issue reports 415 from the start call; one more try with a
                # JSON media type and an empty object as the body.
                if exc.status != 415 or retried_media_type:
                    raise
                retried_media_type = True
                prepared = self._prepared("POST", path, json={})
                continue
            body = response_json(response)
            run_id = _field(body, "runId")
            if not isinstance(run_id, str) or not run_id:
                raise PartitionError(
                    f"{self.platform_title}: no runId in the start answer: {str(body)[:200]}"
                )
            return run_id, _status(body)

    def poll(self, dataflow_id: str, run_id: str) -> str:
        """``GET .../runs/{runId}/status``; a few 500s in a row are retried."""
        path = STATUS_PATH.format(
            dataflow_id=encode_segment(dataflow_id), run_id=encode_segment(run_id)
        )
        response = self.send("GET", self.url_base + path, context={"dataflow_id": dataflow_id})
        return _status(response_json(response))


def _rfc3339(epoch_seconds: float) -> str:
    return format_rfc3339(dt.datetime.fromtimestamp(epoch_seconds, tz=UTC))
