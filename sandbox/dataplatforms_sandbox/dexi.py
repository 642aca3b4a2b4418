"""Dexi.io REST API, as documented (shared/apis/dexi.md, developer.dexi.io).

Served under ``/dexi`` (the tap's ``dexi.api_url`` is ``<sandbox>/dexi/``):

- ``GET runs`` (``offset``, ``limit`` default 30, silently capped at 200, ``robotId``)
- ``GET runs/{runId}``, ``GET runs/{runId}/executions`` (newest first by ``starts``)
- ``GET executions/{executionId}``, ``GET executions/{executionId}/result?format=json``
- ``GET executions/{executionId}/file/{fileId}`` (the id keeps its ``/``)
- ``POST datasets/{dataSetId}/rows`` (``offset``/``limit`` in the JSON body, capped at 200)
- ``POST runs/{runId}/execute`` (asynchronous start: a QUEUED execution; the first start
  of a run loses its answer after creating the execution, see ``lose_start_answers``)

Modelled behaviour: ``X-DexiIO-Account`` + ``X-DexiIO-Access`` (lowercase hex MD5 of account
id then key; anything else is a 401); list bodies ``{offset, totalRows, rows}``; executions
``QUEUED``/``RUNNING`` with ``finished: null`` beside finished ones (``OK``, ``FAILED``,
``STOPPED``), including a long one that started before newer finished ones; one result
gone for good (``gone_results``: 410, the oldest of the first run); results with
mixed cell types, input columns, ``FILE:`` cells and the trailing ``error`` column; the error
body ``{"error": true, "code": N, "message": ...}``; two budgets per account: every request
(75/s, the framework's window) and writes plus file downloads (15/s), both counted over any
rolling second (how Dexi counts is not documented: the strict form) and both answering 429
without any hint header, as documented; a POST that reads dataset rows counts in both.

Tests drive the data through the model (``sb.dexi``): ``advance()`` finishes open executions
and adds new finished ones; ``insert_while_paging`` adds executions between two pages of a
run's execution list.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
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
    make_limiter,
    register_platform,
)
from .shapes import with_unknown_fields

ACCOUNT = CREDENTIALS["dexi"]["account_id"]
API_KEY = CREDENTIALS["dexi"]["api_key"]
ACCESS = hashlib.md5((ACCOUNT + API_KEY).encode("utf-8"), usedforsecurity=False).hexdigest()
MAX_ROWS = 200
DEFAULT_LIMIT = 30
WRITE_LIMIT = (15, 1.0)
BASE_MS = 1_714_521_600_000  # 2024-05-01T00:00:00Z
MINUTE_MS = 60_000
FINISHED_STATES = ("OK", "OK", "OK", "OK", "FAILED", "STOPPED")

RUN_NAMES = (
    "Price watch DE",
    "Store locator",
    "Store locator",
    "Job board / listings",
    "priceWatchFR",
    "Review crawl",
)
TEMPLATES: dict[str, list[str]] = {
    "shop": ["input_url", "title", "price", "qty", "in_stock", "image", "error"],
    "locator": ["input_url", "store", "lat", "lng", "open_days", "error"],
    "listing": ["input_url", "rank", "score", "error"],
}
# Scraped text is rarely ASCII: two-, three- and four-byte UTF-8 characters in every
# result, so a body cut at any byte can stop inside one (an injected fault does so).
_LABELS = ("Größe M", "€ 12,50 inkl. MwSt.", "日本語の説明", "Crème brûlée", "🎁 gift")
_PLACES = ("Zürich", "Malmö", "Kraków", "Ålesund", "Москва")


@dataclass
class Run:
    id: str
    name: str
    robot_id: str
    template: str
    version: int
    #: Output columns the robot gained after it was built (``DexiData.change``).
    extra: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        url = {"url": f"https://{self.template}.example/"}
        return with_unknown_fields(
            {
                "_id": self.id,
                "name": self.name,
                "accountId": ACCOUNT,
                "robotId": self.robot_id,
                "robotName": f"{self.template} robot",
                "version": self.version,
                # Not in the spec: one input map, or a list of them (both seen in clients).
                "inputs": [url, {"url": f"{url['url']}page/2"}] if self.version % 2 else url,
            }
        )


@dataclass
class Execution:
    id: str
    run_id: str
    robot_id: str
    state: str
    starts: int
    finished: int | None
    headers: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    # Started through the API: RUNNING after the first look, finished after this many.
    looks_left: int | None = None
    # A bulk (benchmark-sized) result: its body, serialized once, instead of ``rows``.
    body: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        return with_unknown_fields(
            {
                "_id": self.id,
                "state": self.state,
                "starts": self.starts,
                "finished": self.finished,
                "robotId": self.robot_id,
                "runId": self.run_id,
            }
        )


class DexiData:
    """The seeded account: runs, executions with results, files, datasets."""

    def __init__(self, seed: int, scale: int) -> None:
        self.rng = random.Random(f"dexi:{seed}:{scale}")
        self.lock = threading.Lock()
        self.clock_ms = BASE_MS
        self.runs: list[Run] = []  # oldest first; listed newest first
        self.executions: dict[str, list[Execution]] = {}
        self.by_id: dict[str, Execution] = {}
        self.files: dict[str, bytes] = {}
        self.datasets: dict[str, list[dict[str, Any]]] = {}
        #: Executions whose result is gone for good (expired from storage): 410 Gone. By
        #: default one: the oldest finished execution with rows of the first run.
        self.gone_results: set[str] = set()
        # run id -> executions to insert at the top when a later page is requested
        self.insert_while_paging: dict[str, int] = {}
        # Executions started through the API, and how many looks they take to finish.
        self.started: list[str] = []
        self.execution_looks = 3
        # The first start of a run loses its answer after the execution was created, the
        # way a network or a gateway can (drop, cut, 502 in turn, then one answered; see
        # framework.LOST_ANSWERS): a client that sends it again starts the robot twice.
        self.lose_start_answers = True
        self.lost_start_answers: list[tuple[str, str]] = []  # (run id, how)
        self._first_starts = 0
        # File ids of bulk results -> size; their bytes are made on download.
        self.bulk_files: dict[str, int] = {}
        self._seed(scale)

    # -- ids and values ------------------------------------------------------------------

    def new_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def tick(self, minutes: int = 1) -> int:
        self.clock_ms += minutes * MINUTE_MS + self.rng.randrange(0, 1000)
        return self.clock_ms

    def _file_cell(self, run: Run, execution_id: str) -> str:
        file_id = (
            f"accounts/{ACCOUNT}/robots/{run.robot_id}/runs/{run.id}/executions/{execution_id}"
            f"/results/{self.new_id()}/lines/{self.new_id()}/image"
        )
        size = self.rng.randrange(40, 3000)
        self.files[file_id] = _file_bytes(file_id, size)
        return f"FILE:image/jpeg;{size};{file_id}"

    def _row(self, run: Run, execution_id: str, n: int) -> list[Any]:
        rng = self.rng
        url = f"https://{run.template}.example/p/{n}"
        failed = rng.random() < 0.1
        error = "Timeout waiting for element" if failed else None
        if run.template == "shop":
            price: float | int = round(rng.uniform(1, 500), 2) if rng.random() < 0.7 else 10 * n
            image = self._file_cell(run, execution_id) if rng.random() < 0.5 else None
            if failed:
                return [url, None, None, None, None, None, error]
            title = f"Item {n} · {_LABELS[n % len(_LABELS)]}"
            return [url, title, price, rng.randrange(0, 90), rng.random() < 0.5, image, None]
        if run.template == "locator":
            days = rng.sample(["mon", "tue", "wed", "thu", "fri", "sat"], rng.randrange(1, 5))
            lat, lng = round(rng.uniform(47, 55), 5), round(rng.uniform(6, 15), 5)
            return [url, f"Store {n} {_PLACES[n % len(_PLACES)]}", lat, lng, days, error]
        score: int | str = rng.randrange(0, 100) if rng.random() < 0.8 else "n/a"
        return [url, n, score, error]

    # -- seeding -------------------------------------------------------------------------

    def add_run(self, name: str, template: str) -> Run:
        run = Run(self.new_id(), name, self.new_id(), template, self.rng.randrange(1, 9))
        self.runs.append(run)
        self.executions[run.id] = []
        return run

    def add_execution(
        self, run: Run, state: str, starts: int, finished: int | None, rows: int
    ) -> Execution:
        execution = Execution(self.new_id(), run.id, run.robot_id, state, starts, finished)
        if finished is not None:
            self._fill_result(run, execution, rows)
        self.executions[run.id].append(execution)
        self.by_id[execution.id] = execution
        return execution

    def _fill_result(self, run: Run, execution: Execution, rows: int) -> None:
        execution.headers = list(TEMPLATES[run.template]) + run.extra
        execution.rows = [
            self._row(run, execution.id, n) + [self._extra(run, c, n) for c in run.extra]
            for n in range(rows)
        ]

    def _extra(self, run: Run, column: str, n: int) -> Any:
        # "discount" held whole numbers when the robot gained it, fractions since: the
        # column's type widens from integer to number.
        if column == "discount":
            return n * 5 if len(run.extra) < 2 else round(n * 5 + 0.25, 2)
        return f"{column} {n}"

    def _history(self, run: Run, count: int, rows: tuple[int, int]) -> None:
        for _ in range(count):
            starts = self.tick(self.rng.randrange(1, 5))
            finished = starts + self.rng.randrange(5_000, 20 * MINUTE_MS)
            self.clock_ms = max(self.clock_ms, finished)
            state = self.rng.choice(FINISHED_STATES)
            self.add_execution(run, state, starts, finished, self.rng.randrange(*rows))

    def _seed(self, scale: int) -> None:
        templates = ("shop", "locator", "locator", "listing", "shop", "listing")
        seeded = [self.add_run(n, t) for n, t in zip(RUN_NAMES, templates, strict=True)]
        for index in range(41 * (scale - 1)):
            template = self.rng.choice(list(TEMPLATES))
            seeded.append(self.add_run(f"Catalog crawl {index + 1}", template))
        big, *others = seeded
        # A long execution that started before a stretch of finished ones and is still open.
        long_start = self.tick()
        self._history(big, 230, (0, 3))
        self.add_execution(big, "RUNNING", long_start, None, 0)
        for run in others[:5]:
            self._history(run, self.rng.randrange(3, 12), (0, 6))
        for run in others[5:]:
            self._history(run, 1, (1, 3))
        # Open executions at the top of some lists.
        self.add_execution(big, "RUNNING", self.tick(), None, 0)
        self.add_execution(others[0], "QUEUED", self.tick(), None, 0)
        self.add_execution(others[2], "PENDING", self.tick(), None, 0)
        # The last run has never been executed.
        self.add_run("Never executed", "listing")
        # Results do not stay forever: the oldest one of the first run has expired.
        expired = next(e for e in self.executions[big.id] if e.finished is not None and e.rows)
        self.gone_results.add(expired.id)
        for n, count in enumerate((203, 5)):
            self.datasets[self.new_id()] = [
                {"sku": f"{chr(65 + n)}-{i:03d}", "price": f"{i * 1.5:.2f}", "stock": i % 7}
                for i in range(count)
            ]

    # -- what tests compare with and how they move the data -------------------------------

    def finished_executions(self, run_id: str | None = None) -> list[Execution]:
        runs = [run_id] if run_id else list(self.executions)
        return [e for r in runs for e in self.executions[r] if e.finished is not None]

    def result_readable(self, execution: Execution) -> bool:
        """Whether the result of a finished execution can still be read (not gone)."""
        return execution.finished is not None and execution.id not in self.gone_results

    def readable_results(self, run_id: str | None = None) -> list[Execution]:
        """Finished executions whose result (and so its rows and files) can be read: the
        tap skips the others with a warning, by its documented rule."""
        return [e for e in self.finished_executions(run_id) if e.id not in self.gone_results]

    def open_executions(self) -> list[Execution]:
        return [e for r in self.executions.values() for e in r if e.finished is None]

    def run(self, run_id: str) -> Run:
        return next(r for r in self.runs if r.id == run_id)

    def started_per_run(self) -> Counter[str]:
        """Executions started through the API, per run id."""
        with self.lock:
            return Counter(self.by_id[e].run_id for e in self.started if e in self.by_id)

    def lost_answer_for_first_start(self, run_id: str) -> str | None:
        """How the answer to this start is lost, if it is the first start of its run and
        its turn has come (called with the lock held, after the execution was created)."""
        if not self.lose_start_answers:
            return None
        if sum(1 for e in self.started if e in self.by_id and self.by_id[e].run_id == run_id) != 1:
            return None
        turn = (*LOST_ANSWERS, None)[self._first_starts % (len(LOST_ANSWERS) + 1)]
        self._first_starts += 1
        if turn is not None:
            self.lost_start_answers.append((run_id, turn))
        return turn

    def finish(self, execution: Execution, state: str = "OK", rows: int = 2) -> None:
        execution.finished = self.tick()
        execution.state = state
        self._fill_result(self.run(execution.run_id), execution, rows)

    def advance(
        self, new_executions: int = 1, runs: list[str] | None = None, finish_open: bool = True
    ) -> list[Execution]:
        """Finish the open executions (``finish_open``) and add ``new_executions`` finished
        ones to each run of ``runs`` (default: the first three runs). Returns what finished."""
        done: list[Execution] = []
        with self.lock:
            if finish_open:
                for execution in self.open_executions():
                    self.finish(execution)
                    done.append(execution)
            for run_id in runs or [r.id for r in self.runs[:3]]:
                run = self.run(run_id)
                for _ in range(new_executions):
                    starts = self.tick()
                    done.append(self.add_execution(run, "OK", starts, self.tick(), 2))
        return done

    def add_bulk(self, rows: int, per_execution: int = 50_000) -> dict[str, Any]:
        """A benchmark-sized run: ``rows`` result rows in finished executions of at most
        ``per_execution`` rows, each body serialized once here so that serving it costs
        the sandbox almost nothing next to the client reading it."""
        with self.lock:
            run = self.add_run("Bulk catalog crawl", "shop")
            # Newest first in the list, like every run's history.
            left, executions = rows, []
            while left > 0:
                size = min(per_execution, left)
                starts = self.tick(5)
                execution = Execution(
                    self.new_id(), run.id, run.robot_id, "OK", starts, self.tick(30)
                )
                execution.headers = list(TEMPLATES["shop"])
                body_rows = [self._bulk_row(run, execution.id, n) for n in range(size)]
                payload = {"headers": execution.headers, "rows": body_rows, "totalRows": size}
                execution.body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
                self.executions[run.id].append(execution)
                self.by_id[execution.id] = execution
                executions.append({"id": execution.id, "rows": size})
                left -= size
        return {"run_id": run.id, "run_name": run.name, "rows": rows, "executions": executions}

    def _bulk_row(self, run: Run, execution_id: str, n: int) -> list[Any]:
        """A shop row like ``_row``'s (mixed price types, FILE: cells, failed lines), with
        file ids kept as sizes rather than bytes."""
        rng = self.rng
        url = f"https://{run.template}.example/p/{n}"
        if rng.random() < 0.1:
            return [url, None, None, None, None, None, "Timeout waiting for element"]
        price: float | int = round(rng.uniform(1, 500), 2) if rng.random() < 0.7 else 10 * n
        image = None
        if rng.random() < 0.5:
            file_id = (
                f"accounts/{ACCOUNT}/robots/{run.robot_id}/runs/{run.id}/executions/"
                f"{execution_id}/results/{execution_id[:8]}-{n:08d}/lines/{n:08d}/image"
            )
            size = rng.randrange(40, 3000)
            self.bulk_files[file_id] = size
            image = f"FILE:image/jpeg;{size};{file_id}"
        title = f"Item {n} · {_LABELS[n % len(_LABELS)]}"
        return [url, title, price, rng.randrange(0, 90), rng.random() < 0.5, image, None]

    def change(self, generation: int) -> list[str]:
        """What changes in the account between two syncs (``Sandbox.change``): every
        dataset loses its last third of rows, the first run's robot gains an output
        column (``discount``, then ``note`` with ``discount`` now fractional), seen in a
        new finished execution, and a run that never executed is deleted (its results
        stream had no rows; no other run shares its name, so no stream name moves)."""
        with self.lock:
            said: list[str] = []
            idle = [r for r in self.runs[1:] if not self.executions.get(r.id)]
            if idle:
                gone = idle[-1]
                self.runs.remove(gone)
                del self.executions[gone.id]
                said.append(f"dexi run {gone.id} ({gone.name}): deleted")
            for dataset_id, rows in self.datasets.items():
                lost = max(1, len(rows) // 3) if rows else 0
                del rows[len(rows) - lost :]
                said.append(f"dexi dataset {dataset_id}: {lost} rows deleted")
            run = self.runs[0]
            column = "discount" if generation == 1 else f"note_{generation}"
            run.extra.append(column)
            starts = self.tick()
            self.add_execution(run, "OK", starts, self.tick(), 3)
            said.append(f"dexi run {run.id}: robot gained column {column}")
            return said

    def delete_run(self, run_id: str) -> None:
        with self.lock:
            self.runs = [r for r in self.runs if r.id != run_id]
            for execution in self.executions.pop(run_id, []):
                self.by_id.pop(execution.id, None)


def _file_bytes(file_id: str, size: int) -> bytes:
    seed = hashlib.sha256(file_id.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def _page(rows: list[Any], offset: int, limit: int) -> dict[str, Any]:
    return {"offset": offset, "totalRows": len(rows), "rows": rows[offset : offset + limit]}


def _int(value: Any, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except (TypeError, ValueError):
        return default


@register_platform
class DexiPlatform(Platform):
    name = "dexi"
    base_path = "/dexi"
    default_limit = (75, 1.0)
    # How Dexi counts its second is not documented: any rolling second (the strict form).
    limit_window = "rolling"
    limit_retry_after = "none"  # no rate-limit header is documented
    secret_headers = ("x-dexiio-access", "authorization")

    def __init__(self, seed: int, scale: int) -> None:
        self.data = DexiData(seed, scale)
        self.writes = make_limiter(self.limit_window, *WRITE_LIMIT)
        super().__init__(seed, scale)

    @property
    def model(self) -> DexiData:
        return self.data

    def add_bulk(self, rows: int, per_execution: int | None = None) -> dict[str, Any]:
        return self.data.add_bulk(rows, per_execution or 50_000)

    def set_write_limit(self, limit: int, window_seconds: float = 1.0) -> None:
        self.writes = make_limiter(self.limit_window, limit, window_seconds)

    def register_routes(self, router: Router) -> None:
        router.get("/runs", self.list_runs)
        router.get("/runs/{runId}", self.get_run)
        router.get("/runs/{runId}/executions", self.list_executions)
        router.post("/runs/{runId}/execute", self.execute)
        router.get("/executions/{executionId}", self.get_execution)
        router.get("/executions/{executionId}/result", self.get_result)
        router.post("/datasets/{dataSetId}/rows", self.dataset_rows)
        # A file id keeps its slashes: accounts/.../lines/<line>/<field> (13 segments).
        captures = "/".join(f"{{s{i}}}" for i in range(13))
        router.get("/executions/{executionId}/file/" + captures, self.get_file)

    def identify(self, req: Request) -> Identity:
        access = req.header("x-dexiio-access") or "anonymous"
        ok = req.header("x-dexiio-account") == ACCOUNT and access == ACCESS
        return Identity(key=access, ok=ok)

    def is_read_only(self, req: Request) -> bool:
        # Dataset rows are read with a POST whose body carries offset and limit.
        if req.method == "POST":
            parts = req.path.strip("/").split("/")
            return len(parts) == 3 and parts[0] == "datasets" and parts[2] == "rows"
        return super().is_read_only(req)

    def error(
        self,
        status: int,
        message: str,
        description: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> Response:
        return json_response(status, {"error": True, "code": status, "message": message}, headers)

    def _write_budget(self, req: Request) -> Response | None:
        """The second budget: writes and file downloads, about 15/s per account."""
        verdict = self.writes.hit(req.header("x-dexiio-access") or "anonymous", req.now)
        return None if verdict.allowed else self.error(429, "Too many requests")

    # -- handlers ------------------------------------------------------------------------

    def list_runs(self, req: Request) -> Response:
        offset = max(0, _int(req.arg("offset"), 0))
        limit = min(MAX_ROWS, max(1, _int(req.arg("limit"), DEFAULT_LIMIT)))
        robot = req.arg("robotId") or None
        with self.data.lock:
            runs = [r.to_json() for r in reversed(self.data.runs)]
        if robot:
            runs = [r for r in runs if r["robotId"] == robot]
        return json_response(200, _page(runs, offset, limit))

    def get_run(self, req: Request) -> Response:
        with self.data.lock:
            run = next((r for r in self.data.runs if r.id == req.params["runId"]), None)
        if run is None:
            return self.error(404, "Run not found")
        return json_response(200, run.to_json())

    def list_executions(self, req: Request) -> Response:
        run_id = req.params["runId"]
        offset = max(0, _int(req.arg("offset"), 0))
        limit = min(MAX_ROWS, max(1, _int(req.arg("limit"), DEFAULT_LIMIT)))
        data = self.data
        with data.lock:
            if run_id not in data.executions:
                return self.error(404, "Run not found")
            if offset > 0 and data.insert_while_paging.get(run_id, 0) > 0:
                data.insert_while_paging[run_id] -= 1
                data.add_execution(data.run(run_id), "OK", data.tick(), data.tick(), 1)
            listed = sorted(data.executions[run_id], key=lambda e: e.starts, reverse=True)
            rows = [e.to_json() for e in listed]
        return json_response(200, _page(rows, offset, limit))

    def get_execution(self, req: Request) -> Response:
        data = self.data
        with data.lock:
            execution = data.by_id.get(req.params["executionId"])
            if execution is None:
                return self.error(404, "Execution not found")
            if execution.looks_left is not None and execution.finished is None:
                execution.looks_left -= 1
                execution.state = "RUNNING"
                if execution.looks_left <= 0:
                    data.finish(execution)
            body = execution.to_json()
        return json_response(200, body)

    def get_result(self, req: Request) -> Response:
        if (req.arg("format") or "json") != "json":
            return self.error(400, "Only format=json is emulated")
        execution = self.data.by_id.get(req.params["executionId"])
        if execution is None:
            return self.error(404, "Execution not found")
        if execution.id in self.data.gone_results:
            return self.error(410, "Result is no longer available")
        if execution.body is not None:
            return Response(200, execution.body)
        body = {"headers": execution.headers, "rows": execution.rows}
        return json_response(200, {**body, "totalRows": len(execution.rows)})

    def get_file(self, req: Request) -> Response:
        limited = self._write_budget(req)
        if limited is not None:
            return limited
        parts = [req.params[f"s{i}"] for i in range(13)]
        if any("/" in p for p in parts):  # an encoded slash is not the documented form
            return self.error(404, "File not found")
        file_id = "/".join(parts)
        content = self.data.files.get(file_id)
        if content is None and file_id in self.data.bulk_files:
            content = _file_bytes(file_id, self.data.bulk_files[file_id])
        if content is None or req.params["executionId"] not in self.data.by_id:
            return self.error(404, "File not found")
        return Response(200, content, content_type="image/jpeg")

    def dataset_rows(self, req: Request) -> Response:
        limited = self._write_budget(req)
        if limited is not None:
            return limited
        rows = self.data.datasets.get(req.params["dataSetId"])
        if rows is None:
            return self.error(404, "Dataset not found")
        try:
            body = req.json() or {}
        except ValueError:
            return self.error(400, "Body is not JSON")
        offset = max(0, _int(body.get("offset"), 0))
        limit = min(MAX_ROWS, max(1, _int(body.get("limit"), MAX_ROWS)))
        return json_response(200, _page(rows, offset, limit))

    def execute(self, req: Request) -> Response:
        limited = self._write_budget(req)
        if limited is not None:
            return limited
        data = self.data
        with data.lock:
            run = next((r for r in data.runs if r.id == req.params["runId"]), None)
            if run is None:
                return self.error(404, "Run not found")
            execution = data.add_execution(run, "QUEUED", data.tick(), None, 0)
            execution.looks_left = data.execution_looks
            data.started.append(execution.id)
            lost = data.lost_answer_for_first_start(run.id)
        answer = json_response(200, execution.to_json())
        if lost is not None:
            return lose_answer(answer, lost, self.error(502, "Bad Gateway"))
        return answer
