"""``invision_dataflow_runs``: start each data flow, poll its run, one record per run.

The Data Flow Execution API has a start call and a status call, nothing else: no run
listing, no cancel, no timestamps (docs.profitbase.com, "Execution of Data Flows using
an API"). Starting is a side effect and not idempotent, so a start is sent once
(``core.once``): when its answer is lost after it may have reached InVision, the run it
created is looked for where the API shows it, the monitoring log, whose
``DataFlowExecution`` rows name the run (``... started (run <id>)``); a run id found there
near the start's time is adopted when the status call confirms it belongs to this data
flow. Only when none shows within the grace period, and the start got no answer at all
(dropped, cut, late), is it sent again; a start answered with a 500 after which no run
shows is not (InVision answers an unknown data flow id that way too, so an unknown id
costs one start and fails naming it); when the log cannot be read, it is not sent again
and that data flow fails. ``await=true`` would hold
the request open for up to hours, so runs are polled instead.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import requests
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError

from tap_dataplatforms.core.errors import PartitionError, PlatformAuthError
from tap_dataplatforms.core.http import response_json
from tap_dataplatforms.core.once import LookupFailed, RefusedError, call_once
from tap_dataplatforms.core.partition import in_partition
from tap_dataplatforms.core.readahead import Lane
from tap_dataplatforms.core.redact import redact
from tap_dataplatforms.core.timestamps import UTC, format_rfc3339, parse_datetime, to_invision
from tap_dataplatforms.invision import schemas
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
MONITORING_PATH = "/api/v1/monitoring"
#: How far around a lost start the monitoring log is searched: room for the skew between
#: the tap's clock and InVision's, and for the row being written a little late.
LOOKUP_REACH = dt.timedelta(minutes=2)
_RUN_ID = re.compile(r"\b[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\b")


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


class MonitoringLookup(InVisionStream):
    """The monitoring log (with its own key), read to find the run a lost start made.

    Not a stream of the catalog."""

    name = "invision_run_lookup"
    path = MONITORING_PATH
    key_setting = "monitoring_api_key"
    schema = schemas.EXECUTION_LOG

    def rows(self, since: dt.datetime, until: dt.datetime) -> list[dict[str, Any]]:
        params = {
            "logEventType": "DataFlowExecution",
            "fromDateTimeUtc": to_invision(since),
            "toDateTimeUtc": to_invision(until),
        }
        url = f"{self.url_base}{MONITORING_PATH}?{urlencode(params, quote_via=quote)}"
        body = response_json(self.call("GET", url))
        if not isinstance(body, list):
            raise LookupFailed(f"InVision: the monitoring log is not a list: {str(body)[:200]}")
        return [r for r in body if isinstance(r, dict)]


def _row_time(row: dict[str, Any]) -> dt.datetime | None:
    value = _field(row, "timestamputc")
    try:
        return parse_datetime(str(value)) if value else None
    except ValueError:
        return None


class DataflowRunsStream(InVisionStream):
    """One record per run the tap started, with its final (or last seen) status."""

    name = "invision_dataflow_runs"
    path = START_PATH
    # The runs this sync started, not the platform's list of runs: no table version.
    MIRRORED = False
    primary_keys = ("run_id",)
    schema = schemas.DATAFLOW_RUNS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stopping = threading.Event()
        #: Runs this sync started or adopted: never another flow's lost start.
        self._known_runs: set[str] = set()
        self._known_lock = threading.Lock()
        self.lookup = MonitoringLookup(self.tap)

    def dataflow_ids(self) -> list[str]:
        ids = dict.fromkeys(self.settings.dataflow_ids or ())
        return [i for i in ids if in_partition(self.common.partition, i)]

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        ids = self.dataflow_ids()
        if not self.settings.trigger_dataflows:
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
        workers = max(1, min(self.common.max_concurrency, len(ids)))
        self._stopping = threading.Event()
        lane = Lane(workers)  # on the one read-ahead pool
        try:
            futures = [lane.start(self.run_dataflow, i) for i in ids]
            for future in lane.as_completed(futures):
                record = future.result()
                if record is not None:
                    yield record
        finally:
            # Normally every run is done here; after an error or an interruption the
            # other workers stop at their next poll instead of waiting out the timeout.
            self._stopping.set()
            lane.close(wait=True)

    # -- one data flow --------------------------------------------------------------

    def _fail(self, dataflow_id: str, message: str) -> None:
        label = self.partition_label({"dataflow_id": dataflow_id})
        message = redact(message)
        self.runtime.record_failure(label, message, streams=[self.name])
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
        deadline = clock.monotonic() + self.settings.await_timeout_seconds
        interval = self.settings.poll_interval_seconds
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
                f"run {run_id} still {status} after {self.settings.await_timeout_seconds}s "
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

    def start(self, dataflow_id: str) -> tuple[str, str]:
        """``POST .../start`` without ``await``, once: the run id and its first status."""
        path = START_PATH.format(dataflow_id=encode_segment(dataflow_id))
        context = {"dataflow_id": dataflow_id}
        clock = self.budget.clock
        url = self.url_base + path
        body: dict[str, Any] | None = None
        sent_at = clock.time()

        def send() -> tuple[str, str]:
            nonlocal body, sent_at
            sent_at = clock.time()
            try:
                response = self.call("POST", url, json_body=body, context=context, idempotent=False)
            except PartitionError as exc:
                # A known issue reports 415 from the start call; one more try with a
                # JSON media type and an empty object as the body.
                if exc.status != 415 or body is not None:
                    raise
                body = {}
                sent_at = clock.time()
                response = self.call("POST", url, json_body=body, context=context, idempotent=False)
            answer = response_json(response)
            run_id = _field(answer, "runId")
            if not isinstance(run_id, str) or not run_id:
                # Answered, but without the run: the flow may have started all the same.
                raise RetriableAPIError(
                    f"{self.platform_title}: no runId in the start answer: {str(answer)[:200]}",
                    response,
                )
            return run_id, _status(answer)

        rejected: set[str] = set()

        def adopt() -> tuple[str, str] | None:
            return self._find_started_run(dataflow_id, sent_at, rejected)

        try:
            run_id, status = call_once(
                self,
                send,
                adopt,
                what=f"{self.platform_title}: starting data flow {dataflow_id}",
                # An unknown id is answered with the same 500 as a passing fault, and no
                # call tells the two apart (no listing of data flows; the status call
                # answers 500 for a bad id too): a 500 after which no run shows in the
                # monitoring log is final, so an unknown id costs one start, not two.
                resend_after_error=False,
            )
        except RefusedError as exc:
            raise RefusedError(
                f"{exc} (is {dataflow_id} a data flow of this installation? InVision "
                "answers an unknown data flow id like any failure)",
                exc.status,
            ) from None
        with self._known_lock:
            self._known_runs.add(run_id.lower())
        return run_id, status

    def _find_started_run(
        self, dataflow_id: str, sent_at: float, rejected: set[str]
    ) -> tuple[str, str] | None:
        """The run of this data flow that the monitoring log shows started near
        ``sent_at``, confirmed by its status call; ``None`` while none shows."""
        moment = dt.datetime.fromtimestamp(sent_at, tz=UTC)
        rows = self.lookup.rows(moment - LOOKUP_REACH, moment + LOOKUP_REACH)
        with self._known_lock:
            known = set(self._known_runs)
        distance: dict[str, float] = {}
        for row in rows:
            at = _row_time(row)
            gap = abs((at - moment).total_seconds()) if at is not None else float("inf")
            for found in _RUN_ID.findall(str(_field(row, "data") or "")):
                run_id = found.lower()
                if run_id not in known and run_id not in rejected:
                    distance[run_id] = min(gap, distance.get(run_id, gap))
        # The nearest first: a run of another flow, or started by someone else, is
        # usually further from the instant the start was sent.
        for run_id in sorted(distance, key=lambda r: distance[r]):
            try:
                # With every retry: a passing 500 must not make the flow's own run look
                # like another's, which would start the flow a second time.
                status = self.poll(dataflow_id, run_id)
            except (FatalAPIError, RetriableAPIError):
                # Every failure is a 500 here (doc): most likely another flow's run.
                rejected.add(run_id)
                continue
            return run_id, status
        return None

    def poll(self, dataflow_id: str, run_id: str) -> str:
        """``GET .../runs/{runId}/status``; a few 500s in a row are retried."""
        path = STATUS_PATH.format(
            dataflow_id=encode_segment(dataflow_id), run_id=encode_segment(run_id)
        )
        response = self.call("GET", self.url_base + path, context={"dataflow_id": dataflow_id})
        return _status(response_json(response))


def _rfc3339(epoch_seconds: float) -> str:
    return format_rfc3339(dt.datetime.fromtimestamp(epoch_seconds, tz=UTC))
