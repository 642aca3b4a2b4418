"""Profitbase InVision: the Data Flow Execution, Monitoring and JSON Data APIs.

As described in shared/apis/invision.md.

Served under ``/invision`` (the InVision root, including its application path):

- ``POST api/pub/v1/dataflows/{id}/start`` (``await=true`` blocks until the run ends)
- ``GET  api/pub/v1/dataflows/{id}/runs/{runId}/status``
- ``GET  api/v1/monitoring?fromDateTimeUtc=&toDateTimeUtc=&logEventType=&logLevel=``
- ``GET  api/pub/v1/db/tables/{table}/data`` and ``GET api/pub/v1/db/objects/{name}/data``

Modelled behaviour: the key in ``x-api-key`` or in the ``api_key`` query parameter (doc);
every failure, a bad key included, is HTTP 500 with an ASP.NET-style body; runs move
Pending -> Running -> Succeeded/Failed over (short, configurable) time, one flow always
fails and one never finishes (the pre-2023.6 "running forever" bug); each run writes
``DataFlowExecution`` rows to the monitoring log; the log also holds other event types;
``timestamputc`` comes without offset, with or without fractional seconds, and several
rows share an instant; the window bounds have whole seconds and are inclusive; a start
with a non-JSON ``Content-Type`` gets 415 (known issue); no pagination, no rate limit;
the first start of a flow loses its answer after starting the run (``lose_start_answers``);
a data object whose view is broken (``Forecast_View``, ``broken``) answers 500 every time.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .credentials import CREDENTIALS
from .framework import (
    LOST_ANSWERS,
    Identity,
    Platform,
    Request,
    Response,
    Router,
    json_response,
    lose_answer,
    register_platform,
)
from .shapes import with_unknown_fields

API_KEY = CREDENTIALS["invision"]["api_key"]
UTC = dt.timezone.utc
FILTER_FORMAT = "%Y.%m.%d %H:%M:%S"
LEVELS = ("Information", "Warning", "Error", "Verbose")
OTHER_EVENTS = ("WorkbookExecution", "Login", "SchedulerJob")
#: Data objects of the default installation that always fail: the view behind
#: ``Forecast_View`` selects from a table that was dropped, so the JSON Data API answers
#: 500 for it, every time (not in ``InVisionModel.tables``: a run configuring every table
#: stays whole; one that configures it sees one stream fail, contained, and the rest).
BROKEN_OBJECTS = {"Forecast_View": "Invalid object name 'dbo.ForecastBase'."}
_FLOW_NAMES = (
    "Load actuals",
    "Refresh budget",
    "Import HR data",
    "Sync cost centers",
    "Rebuild forecasts",
    "Export to ERP",
    "Load currency rates",
    "Archive periods",
)


@dataclass
class DataFlow:
    id: str
    name: str
    duration: float  # seconds from start to the final status
    outcome: str  # "Succeeded", "Failed" or "Hang" (never finishes)


@dataclass
class Run:
    id: str
    flow: DataFlow
    started: float
    logged_end: bool = False

    def status(self, now: float, pending_seconds: float) -> str:
        elapsed = now - self.started
        if elapsed < min(pending_seconds, self.flow.duration / 2):
            return "Pending"
        if self.flow.outcome == "Hang" or elapsed < self.flow.duration:
            return "Running"
        return self.flow.outcome

    @property
    def ends_at(self) -> float | None:
        return None if self.flow.outcome == "Hang" else self.started + self.flow.duration


#: The value forms a monitoring row may take (the notes document the field names, not their
#: types): ``object_data``, an event's structured data served as a nested JSON object rather
#: than text (every fourth row); ``enum_numbers``, ``level`` and ``logevent`` as the numbers
#: of .NET enums (a serializer without a string-enum converter); ``text_rowids``, row ids as
#: text that is not a number. The default installation serves structured data as objects.
LOG_FORMS = frozenset({"object_data", "enum_numbers", "text_rowids"})
DEFAULT_LOG_FORMS = frozenset({"object_data"})
LOG_LEVELS = ("Verbose", "Information", "Warning", "Error")
LOG_EVENTS = ("DataFlowExecution", *OTHER_EVENTS)


@dataclass
class LogRow:
    rowid: int
    at: float  # epoch seconds, millisecond precision
    level: str
    logevent: str
    data: str

    def to_json(self, forms: frozenset[str] = frozenset()) -> dict[str, Any]:
        """The row as the monitoring API serves it, in the value ``forms`` the
        installation's serializer uses (``LOG_FORMS``)."""
        moment = dt.datetime.fromtimestamp(self.at, tz=UTC)
        text = moment.strftime("%Y-%m-%dT%H:%M:%S")
        if moment.microsecond:
            text += f".{moment.microsecond // 1000:03d}"
        data: Any = self.data
        if "object_data" in forms and self.rowid % 4 == 0:
            data = {"message": self.data, "source": self.logevent, "rowid": self.rowid}
        level: Any = self.level
        event: Any = self.logevent
        if "enum_numbers" in forms:
            level = LOG_LEVELS.index(self.level)
            event = LOG_EVENTS.index(self.logevent)
        return with_unknown_fields(
            {
                "rowid": f"R{self.rowid}" if "text_rowids" in forms else self.rowid,
                "data": data,
                "level": level,
                "timestamputc": text,
                "logevent": event,
            }
        )


@dataclass
class InVisionModel:
    """The seeded installation: data flows, runs, the monitoring log, tables."""

    flows: dict[str, DataFlow]
    tables: dict[str, list[dict[str, Any]]]
    log: list[LogRow] = field(default_factory=list)
    runs: dict[str, Run] = field(default_factory=dict)
    #: Seconds a run stays Pending, and a factor on every flow's duration (tests shorten).
    pending_seconds: float = 0.1
    speed: float = 1.0
    #: The first start of a flow loses its answer after the run was created, as a network
    #: or a proxy can (drop, cut, 500 in turn, then one answered; framework.LOST_ANSWERS):
    #: a client that sends it again runs the flow twice.
    lose_start_answers: bool = True
    lost_start_answers: list[tuple[str, str]] = field(default_factory=list)  # (flow, how)
    first_starts: int = 0
    rng: random.Random = field(default_factory=random.Random)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: Tables or data objects that answer 500 permanently (name -> SQL error).
    broken: dict[str, str] = field(default_factory=lambda: dict(BROKEN_OBJECTS))
    #: How the monitoring API's serializer renders values (``LOG_FORMS``).
    log_forms: frozenset[str] = DEFAULT_LOG_FORMS

    def change(self, generation: int) -> list[str]:
        """Between two syncs (``Sandbox.change``): a data flow rewrites every table with
        the first half of its rows, and ``GL_Actuals`` gains a column."""
        with self.lock:
            said: list[str] = []
            for name, rows in self.tables.items():
                kept = rows[: len(rows) // 2]
                if name == "GL_Actuals":
                    column = f"Currency{generation}" if generation > 1 else "Currency"
                    for n, row in enumerate(kept):
                        row[column] = ("NOK", "EUR", "USD")[n % 3]
                    said.append(f"invision table {name}: column {column} added")
                self.tables[name] = kept
                said.append(f"invision table {name}: rewritten, {len(rows) - len(kept)} rows fewer")
            return said

    # -- what tests read ----------------------------------------------------------

    def flow_named(self, outcome: str) -> DataFlow:
        return next(f for f in self.flows.values() if f.outcome == outcome)

    @property
    def succeeding(self) -> list[DataFlow]:
        return [f for f in self.flows.values() if f.outcome == "Succeeded"]

    def started_per_flow(self) -> Counter[str]:
        """Runs started through the API, per data flow id."""
        with self.lock:
            return Counter(r.flow.id for r in self.runs.values())

    def lost_answer_for_first_start(self, flow_id: str) -> str | None:
        """How the answer to this start is lost, if it is the first start of its flow and
        its turn has come (called after the run was created)."""
        with self.lock:
            if not self.lose_start_answers:
                return None
            if sum(1 for r in self.runs.values() if r.flow.id == flow_id) != 1:
                return None
            turn = (*LOST_ANSWERS, None)[self.first_starts % (len(LOST_ANSWERS) + 1)]
            self.first_starts += 1
            if turn is not None:
                self.lost_start_answers.append((flow_id, turn))
            return turn

    def execution_rows(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                r.to_json(self.log_forms) for r in self.log if r.logevent == "DataFlowExecution"
            ]

    # -- changing the data --------------------------------------------------------

    def _append(self, at: float, level: str, event: str, data: str) -> LogRow:
        rowid = self.log[-1].rowid + self.rng.randint(1, 5) if self.log else 184_000
        row = LogRow(rowid, round(at, 3), level, event, data)
        self.log.append(row)
        return row

    def advance(self, rows: int = 5, now: float | None = None) -> list[dict[str, Any]]:
        """Add ``rows`` DataFlowExecution rows after the newest one and up to ``now``."""
        now = time.time() if now is None else now
        with self.lock:
            last = max((r.at for r in self.log), default=now - 60)
            step = max((now - last) / (rows + 1), 0.001)
            added = []
            for n in range(rows):
                flow = self.rng.choice(list(self.flows.values()))
                at = min(last + step * (n + 1), now)
                added.append(
                    self._append(
                        at,
                        "Information",
                        "DataFlowExecution",
                        f"Data flow '{flow.name}' step {n} done",
                    )
                )
            return [r.to_json(self.log_forms) for r in added]

    def start(self, flow: DataFlow, now: float) -> Run:
        with self.lock:
            scaled = DataFlow(flow.id, flow.name, flow.duration * self.speed, flow.outcome)
            run = Run(str(uuid.UUID(int=self.rng.getrandbits(128), version=4)), scaled, now)
            self.runs[run.id] = run
            self._append(
                now,
                "Information",
                "DataFlowExecution",
                f"Data flow '{flow.name}' started (run {run.id})",
            )
            return run

    def settle(self, now: float) -> None:
        """Write the end rows of runs that have finished by ``now``."""
        with self.lock:
            ended = [
                r for r in self.runs.values() if not r.logged_end and (r.ends_at or now + 1) <= now
            ]
            for run in sorted(ended, key=lambda r: r.ends_at or 0):
                run.logged_end = True
                at = max(run.ends_at or now, self.log[-1].at if self.log else 0)
                if run.flow.outcome == "Failed":
                    self._append(
                        at,
                        "Error",
                        "DataFlowExecution",
                        f"Data flow '{run.flow.name}' failed: timeout reading source "
                        f"(run {run.id})",
                    )
                else:
                    self._append(
                        at,
                        "Information",
                        "DataFlowExecution",
                        f"Data flow '{run.flow.name}' completed (run {run.id})",
                    )


def _seed_model(seed: int, scale: int, now: float) -> InVisionModel:
    rng = random.Random(f"invision-{seed}-{scale}")

    def guid() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    flows: dict[str, DataFlow] = {}
    count = 4 + 2 * scale
    for n in range(count):
        outcome = "Failed" if n == 1 else "Hang" if n == 3 else "Succeeded"
        name = _FLOW_NAMES[n % len(_FLOW_NAMES)] + (
            f" {n // len(_FLOW_NAMES) + 1}" if n >= len(_FLOW_NAMES) else ""
        )
        flow = DataFlow(guid(), name, round(rng.uniform(0.3, 0.8), 2), outcome)
        flows[flow.id] = flow

    model = InVisionModel(flows=flows, tables=_seed_tables(rng, scale), rng=rng)
    # History: 40 days of events before the sandbox started, some sharing an instant.
    at = now - 40 * 86_400
    while True:
        at += rng.uniform(600, 5400) / scale
        if at >= now - 120:
            break
        at = round(at, 3) if rng.random() < 0.8 else float(int(at))
        flow = rng.choice(list(flows.values()))
        if rng.random() < 0.3:
            event = rng.choice(OTHER_EVENTS)
            model._append(at, rng.choice(LEVELS), event, f"{event} by user{rng.randint(1, 9)}")
            continue
        run_id = guid()
        model._append(
            at,
            "Information",
            "DataFlowExecution",
            f"Data flow '{flow.name}' started (run {run_id})",
        )
        if rng.random() < 0.25:  # a second row at the very same instant
            model._append(
                at,
                "Verbose",
                "DataFlowExecution",
                f"Data flow '{flow.name}' queued on worker {rng.randint(1, 4)}",
            )
        end = at + rng.uniform(5, 900)
        if end < now - 120 and rng.random() < 0.9:
            ok = rng.random() < 0.85
            model._append(
                round(end, 3),
                "Information" if ok else "Error",
                "DataFlowExecution",
                f"Data flow '{flow.name}' "
                f"{'completed' if ok else 'failed: source unavailable'} (run {run_id})",
            )
            at = end
    model.log.sort(key=lambda r: r.rowid)
    return model


def _seed_tables(rng: random.Random, scale: int) -> dict[str, list[dict[str, Any]]]:
    accounts = [str(3000 + 10 * n) for n in range(12)]
    departments = ["Sales", "Finance", "HR", "Operations", "R&D"]
    gl = []
    for n in range(250 * scale):
        posted = dt.datetime(2024, 1, 1, 6, tzinfo=UTC) + dt.timedelta(days=n % 120, minutes=n)
        gl.append(
            {
                "Account": rng.choice(accounts),
                "Department": rng.choice(departments),
                "Period": posted.strftime("%Y-%m"),
                "Amount": round(rng.uniform(-500, 5000), 2)
                if n % 7
                else float(rng.randint(1, 900)),
                "Quantity": rng.randint(0, 40),
                "PostedAt": posted.strftime("%Y-%m-%dT%H:%M:%S"),
                "Approved": rng.random() < 0.8,
                "Comment": None if n % 5 else f"Note {n}",
            }
        )
    centers = [
        {
            "CostCenter": f"CC{n:03d}",
            "Name": rng.choice(["Oslo", "Bergen", "Trondheim", "Stavanger", "Tromsø"]) + f" {n}",
            "Manager": None if n % 4 == 0 else f"manager{n}@example.com",
            "ValidFrom": f"2023-{1 + n % 12:02d}-01",
            "Budget": rng.randint(10_000, 500_000),
        }
        for n in range(30 * scale)
    ]
    projects = [
        {"Prosjekt": f"P-{n}", "Område": "Øst", "Timer": round(rng.uniform(0, 100), 1)}
        for n in range(12)
    ]
    return {"GL_Actuals": gl, "Cost Centers": centers, "Prosjekt_Øst": projects}


def _error(
    message: str, status: int = 500, exception: str = "System.InvalidOperationException"
) -> Response:
    body = {
        "Message": "An error has occurred.",
        "ExceptionMessage": message,
        "ExceptionType": exception,
    }
    return json_response(status, body)


def _parse_filter(value: str | None) -> float | None:
    if value is None:
        return None
    return dt.datetime.strptime(value, FILTER_FORMAT).replace(tzinfo=UTC).timestamp()


@register_platform
class InVisionPlatform(Platform):
    name = "invision"
    base_path = "/invision"
    default_limit = None  # none documented
    # A limit set by a test stands for a reverse proxy, which would send Retry-After.
    limit_retry_after = "seconds"
    secret_headers = ("authorization", "x-api-key")
    fault_statuses = (500,)  # every documented failure is a 500

    def __init__(self, seed: int, scale: int) -> None:
        self._model = _seed_model(seed, scale, time.time())
        super().__init__(seed, scale)

    @property
    def model(self) -> InVisionModel:
        return self._model

    def register_routes(self, router: Router) -> None:
        router.post("/api/pub/v1/dataflows/{id}/start", self.start)
        router.get("/api/pub/v1/dataflows/{id}/runs/{runId}/status", self.status)
        router.get("/api/v1/monitoring", self.monitoring)
        router.get("/api/pub/v1/db/tables/{table}/data", self.table_data)
        router.get("/api/pub/v1/db/objects/{table}/data", self.table_data)

    def identify(self, req: Request) -> Identity:
        key = req.header("x-api-key") or req.arg("api_key") or "anonymous"
        return Identity(key=key, ok=key == API_KEY)

    # -- every failure is a 500 (doc) ------------------------------------------------

    def error(
        self,
        status: int,
        message: str,
        description: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> Response:
        resp = _error(f"{message}: {description}" if description else message, status)
        for name, value in headers or []:
            resp.set_header(name, value)
        return resp

    def unauthorized(self, req: Request) -> Response:
        return _error("Invalid or missing API key.", exception="System.UnauthorizedAccessException")

    def not_found(self, req: Request) -> Response:
        return _error(f"No HTTP resource was found that matches the request URI '{req.path}'.")

    def method_not_allowed(self, req: Request, allowed: list[str]) -> Response:
        return _error(f"The requested resource does not support http method '{req.method}'.")

    # -- Data Flow Execution API -----------------------------------------------------

    def start(self, req: Request) -> Response:
        model = self._model
        content_type = (req.header("content-type") or "").split(";")[0].strip().lower()
        if content_type and content_type != "application/json":
            return json_response(
                415,
                {
                    "Message": f"The request entity's media type '{content_type}' "
                    "is not supported for this resource."
                },
            )
        flow = model.flows.get(req.params["id"].lower())
        if flow is None:
            return _error(f"Data flow with id '{req.params['id']}' does not exist.")
        run = model.start(flow, req.now)
        if (req.arg("await") or "").lower() == "true":
            end = run.ends_at
            while end is not None and time.time() < end:
                time.sleep(0.02)
            now = time.time()
            model.settle(now)
            return json_response(
                200, {"runId": run.id, "status": run.status(now, model.pending_seconds)}
            )
        answer = json_response(
            200, {"runId": run.id, "status": run.status(req.now, model.pending_seconds)}
        )
        lost = model.lost_answer_for_first_start(flow.id)
        if lost is not None:
            return lose_answer(answer, lost, _error("Object reference not set to an instance."))
        return answer

    def status(self, req: Request) -> Response:
        model = self._model
        model.settle(req.now)
        run = model.runs.get(req.params["runId"].lower())
        if run is None or run.flow.id != req.params["id"].lower():
            return _error(f"Run '{req.params['runId']}' was not found.")
        return json_response(
            200, {"runId": run.id, "status": run.status(req.now, model.pending_seconds)}
        )

    # -- Monitoring API --------------------------------------------------------------

    def monitoring(self, req: Request) -> Response:
        model = self._model
        model.settle(req.now)
        try:
            low = _parse_filter(req.arg("fromDateTimeUtc"))
            high = _parse_filter(req.arg("toDateTimeUtc"))
        except ValueError:
            return _error(
                "String was not recognized as a valid DateTime.", exception="System.FormatException"
            )
        event = req.arg("logEventType")
        level = req.arg("logLevel")
        with model.lock:
            rows = [
                r.to_json(model.log_forms)
                for r in model.log
                if (low is None or r.at >= low)
                and (high is None or r.at <= high)
                and (event is None or r.logevent == event)
                and (level is None or r.level == level)
            ]
        return json_response(200, rows)

    # -- JSON Data API ---------------------------------------------------------------

    def table_data(self, req: Request) -> Response:
        broken = self._model.broken.get(req.params["table"])
        if broken is not None:
            return _error(broken, exception="System.Data.SqlClient.SqlException")
        rows = self._model.tables.get(req.params["table"])
        if rows is None:
            return _error(
                f"Invalid object name '{req.params['table']}'.",
                exception="System.Data.SqlClient.SqlException",
            )
        return json_response(200, rows)
