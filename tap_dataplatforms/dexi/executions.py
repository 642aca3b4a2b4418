"""How ``dexi_executions`` reads a newest-first list so that each finished execution is
delivered once: epoch times, open executions, the bookmark with the ids sitting on it,
the watermark below which paging may stop, the throttled state writes of its children,
and the start of runs (``dexi.execute_runs``)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar

from requests.exceptions import RequestException
from singer_sdk import typing as th
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError

from tap_dataplatforms.core.errors import PlatformAuthError
from tap_dataplatforms.core.http import response_json
from tap_dataplatforms.core.once import LookupFailed, call_once
from tap_dataplatforms.core.timestamps import parse_datetime, to_rfc3339
from tap_dataplatforms.dexi.client import PAGE_SIZE, WRITES, DexiStream, encode_segment

if TYPE_CHECKING:
    from singer_sdk import Tap

#: Partition-state keys of ``dexi_executions`` besides the bookmark (see ``request_records``).
OPEN_IDS = "open_execution_ids"
OPEN_SINCE = "open_since_starts"
AT_BOOKMARK = "delivered_at_bookmark"
#: Paging stops below the watermark only this far below it, in case a list is not
#: strictly ordered by ``starts`` (a clock skew, an execution queued then started).
STOP_MARGIN_MS = 24 * 3600 * 1000
#: Passes over an execution list whose ``totalRows`` changes while it is paged.
MAX_LIST_PASSES = 3


def epoch_ms(value: Any) -> int | None:
    """Execution times are epoch milliseconds (doc); numeric strings and ISO 8601 are
    accepted too, so that one odd value does not stop a run."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return round(value)
    try:
        text = str(value).strip()
        if text.lstrip("-").replace(".", "", 1).isdigit():
            return round(float(text))
        return round(parse_datetime(text).timestamp() * 1000) if text else None
    except ValueError:
        return None


#: States of executions that have not ended (``finished`` is null for them).
OPEN_STATES = frozenset({"QUEUED", "PENDING", "RUNNING"})


def is_open(execution: dict[str, Any]) -> bool:
    """Not finished: no end time (or a zero one), or a state that has not ended."""
    finished = execution.get("finished")
    return not finished or finished <= 0 or execution.get("state") in OPEN_STATES


class StateClock:
    """When the Dexi children last wrote the tap state (one per tap, shared)."""

    def __init__(self) -> None:
        self.last = float("-inf")


class ThrottledState:
    """Results and files write the tap state at most every few seconds.

    The SDK writes the whole tap state after every child sync, so once per execution for
    results and files; with one state partition per run, that output would grow as runs x
    executions. The executions stream still writes it after each run, and the final
    state is written regardless.
    """

    STATE_EVERY_SECONDS: ClassVar[float] = 2.0
    state_clock: StateClock | None = None

    def state_message_due(self) -> bool:
        clock = self.state_clock
        if clock is not None:
            now = time.monotonic()
            if now - clock.last < self.STATE_EVERY_SECONDS:
                return False
            clock.last = now
        return True


def settle_bookmark(
    state: dict[str, Any],
    replication_key: str,
    previous_ms: int | None,
    previous_ids: set[str],
    sent: list[tuple[int, str]],
) -> None:
    """The bookmark on the newest ``finished`` delivered (never moved back), with the
    ids delivered at exactly that instant, so that they are not sent again."""
    top = max([previous_ms or 0, *(ms for ms, _ in sent)])
    if not top:
        state.pop("replication_key_value", None)
        return
    at_top = {i for ms, i in sent if ms == top}
    if top == previous_ms:
        at_top |= previous_ids
    state["replication_key"] = replication_key
    state["replication_key_value"] = to_rfc3339(top, epoch_unit="ms")
    state[AT_BOOKMARK] = sorted(at_top)


def next_watermark(
    open_rows: list[dict[str, Any]], rows: list[dict[str, Any]], previous: Any
) -> int | None:
    """The ``starts`` below which every execution is known finished (and delivered):
    the oldest open one, else the newest listed; unknown if an open one has none."""
    if open_rows:
        marks = [r.get("starts") for r in open_rows]
        known = [m for m in marks if isinstance(m, int)]
        return min(known) if len(known) == len(marks) else None
    known = [r["starts"] for r in rows if isinstance(r.get("starts"), int)]
    if known:
        return max(known)
    return previous if isinstance(previous, int) else None


def _listed(body: Any) -> list[dict[str, Any]]:
    """The rows of an executions listing; any other shape means nothing can be told."""
    rows = body.get("rows") if isinstance(body, dict) else None
    if not isinstance(rows, list):
        raise LookupFailed(f"the executions listing holds no rows: {str(body)[:200]}")
    return [r for r in rows if isinstance(r, dict)]


class RunStarter(DexiStream):
    """``dexi.execute_runs``: start a run and wait until its execution finishes.

    Started with the asynchronous ``POST runs/{id}/execute``, then polled; never the
    ``/wait`` endpoints, which time out after 10 minutes and delete the execution (doc).
    Not a stream of the catalog: a POST on the write budget.
    """

    name = "dexi_run_starts"
    path = "runs/{run_id}/execute"
    budget_kind = WRITES
    schema = th.PropertiesList(th.Property("_id", th.StringType)).to_dict()
    #: First wait between polls; grows by half each time up to ``POLL_MAX_SECONDS``.
    POLL_FIRST_SECONDS: ClassVar[float] = 2.0
    POLL_MAX_SECONDS: ClassVar[float] = 30.0
    #: Longest wait for one execution before the run is extracted as it is.
    TIMEOUT_SECONDS: ClassVar[float] = 3600.0

    def __init__(self, tap: Tap, run_ids: list[str] | None = None) -> None:
        super().__init__(tap)
        #: The runs to start together at the first partition, so that they run meanwhile.
        self.run_ids = list(run_ids or [])
        self.started: dict[str, tuple[str, float]] = {}  # run -> (execution, deadline)
        #: Runs whose start failed: never sent again by their own partition.
        self.failed: dict[str, Exception] = {}

    def start(self, run_id: str, reader: DexiStream) -> None:
        """``POST runs/{id}/execute``, carried out once (see ``core.once``).

        An execution started by a request whose answer was lost shows in the run's
        executions listing (newest first) as one that was not there before the request
        and started no earlier than the newest listed then: that one is adopted.
        """
        listing = f"runs/{encode_segment(run_id)}/executions"
        before = _listed(reader.fetch_json(listing, {"offset": 0, "limit": PAGE_SIZE}))
        known = {str(r.get("_id")) for r in before}
        newest = max((epoch_ms(r.get("starts")) or 0 for r in before), default=0)
        url = f"{self.url_base}runs/{encode_segment(run_id)}/execute"

        def send() -> dict[str, Any]:
            response = self.call("POST", url, params={"connect": "false"}, idempotent=False)
            body = response_json(response)
            if not isinstance(body, dict) or not body.get("_id"):
                # Something answered, but not with the execution: it may have started.
                raise RetriableAPIError(
                    f"Dexi: no execution id in the answer to starting run {run_id}", response
                )
            return body

        def adopt() -> dict[str, Any] | None:
            rows = _listed(reader.fetch_json(listing, {"offset": 0, "limit": PAGE_SIZE}))
            new = [
                r
                for r in rows
                if str(r.get("_id")) not in known
                and (epoch_ms(r.get("starts")) or newest) >= newest
            ]
            return min(new, key=lambda r: epoch_ms(r.get("starts")) or 0) if new else None

        try:
            execution = call_once(self, send, adopt, what=f"Dexi: starting run {run_id}")
        except Exception as exc:
            self.failed[run_id] = exc
            raise
        deadline = self.budget.clock.monotonic() + self.TIMEOUT_SECONDS
        self.started[run_id] = (str(execution["_id"]), deadline)
        self.logger.info("Dexi: started run %s as execution %s", run_id, execution["_id"])

    def start_and_wait(self, run_id: str, reader: DexiStream) -> dict[str, Any]:
        """Start every run (once), then wait for this one's execution to end."""
        if not self.started and not self.failed:
            for other in self.run_ids:
                if other != run_id:
                    try:
                        self.start(other, reader)
                    except PlatformAuthError:
                        raise
                    except (FatalAPIError, RetriableAPIError, RequestException) as exc:
                        # That run's own partition reports it.
                        self.logger.warning("Dexi: could not start run %s: %s", other, exc)
        if run_id in self.failed:
            raise self.failed[run_id]
        if run_id not in self.started:
            self.start(run_id, reader)
        execution_id, deadline = self.started[run_id]
        clock = self.budget.clock
        wait = self.POLL_FIRST_SECONDS
        path = f"executions/{encode_segment(execution_id)}"
        current = reader.fetch_json(path)
        while is_open({**current, "finished": epoch_ms(current.get("finished"))}):
            if clock.monotonic() + wait > deadline:
                raise TimeoutError(
                    f"Dexi: execution {execution_id} of run {run_id} still "
                    f"{current.get('state')} after {self.TIMEOUT_SECONDS:.0f}s"
                )
            clock.sleep(wait)
            wait = min(wait * 1.5, self.POLL_MAX_SECONDS)
            current = reader.fetch_json(path)
        self.logger.info(
            "Dexi: execution %s of run %s ended %s", execution_id, run_id, current.get("state")
        )
        return current
