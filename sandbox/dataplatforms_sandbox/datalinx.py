"""Datalinx AI REST API, as the project's notes describe it (shared/apis/datalinx.md).

Served under ``/datalinx/api`` (the base URL of a real instance ends in ``/api``):

- ``POST /auth/login`` ``{email, password}`` -> bare ``{access_token, token_type, expires_in}``
- ``GET /workspaces`` (organization level)
- ``GET /sources``, ``/schemas``, ``/mappings``, ``/pipelines``,
  ``/pipelines/{pipeline_id}/runs``, ``/audiences``, ``/queries``, ``/alerts``: scoped to
  the workspace named in ``X-Workspace``
- ``GET /users``, ``/roles``, ``/service-accounts``: organization level, ``org.admin`` only
- ``GET /openapi.json``: the instance's OpenAPI document (``datalinx_openapi.py``), no
  credentials needed (``openapi_denied``: answered 401 or 403 instead)

Modelled behaviour: exactly one of ``X-API-Key`` (an admin and a non-admin service-account
key) or ``Authorization: Bearer <JWT>``; JWTs last ``token_ttl`` seconds (one hour by
default, a few seconds in tests) and an expired one is a 401 ``TOKEN_EXPIRED``; every answer
is the ``{status, data}`` envelope except the login's; errors are
``{status: "failed", message, error_code}``, but a 422 on bad query parameters comes in the
framework's ``{"detail": [...]}`` shape; lists paginate with ``page`` (1-based) and
``page_size`` (at most 100, larger values are clamped and the clamp echoed) and report
``pagination.total_pages`` (0 for an empty list); pages past the end are empty. A scoped
request without ``X-Workspace`` silently falls back to the default workspace (pitfall 4);
a name that is not a workspace's (its id, say) is a 404 ``WORKSPACE_NOT_FOUND``. Rate limits
are per organization: a per-minute fixed window (the framework's limiter, reported in
``X-RateLimit-Limit/-Remaining/-Reset``, reset in epoch seconds) plus the plan's burst, a
token bucket refilled at the per-minute rate; either one exhausted is a 429 with
``X-RateLimit-Remaining: 0`` and no ``Retry-After`` (not documented). Some schemas and
mappings carry no ``id`` (pitfall 11); some source configurations carry credentials
(pitfall 9); timestamps are mostly ``...Z`` with a few fractional or offset forms. The
default instance lacks the (assumed) ``/alerts`` route (``missing_routes``): it answers the
framework's bare 404 and is absent from the OpenAPI document.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from . import datalinx_openapi
from .credentials import CREDENTIALS
from .framework import (
    Identity,
    Platform,
    Request,
    Response,
    Router,
    Verdict,
    json_response,
    reason_phrase,
    register_platform,
)
from .shapes import with_unknown_fields

API_KEY = CREDENTIALS["datalinx"]["api_key"]
EMAIL = CREDENTIALS["datalinx"]["email"]
PASSWORD = CREDENTIALS["datalinx"]["password"]
#: A service-account key of the same organization without ``org.admin``.
VIEWER_API_KEY = "sbx-datalinx-viewer-key-0001"
ORGANIZATION = "org_acme"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100
#: Documented plans: requests per minute and burst.
PLANS = {"free": (60, 10), "pro": (300, 50), "enterprise": (1000, 200)}
WORKSPACE_RESOURCES = (
    "sources",
    "schemas",
    "mappings",
    "pipelines",
    "audiences",
    "queries",
    "alerts",
)
ORG_RESOURCES = ("users", "roles", "service-accounts")
_EPOCH = datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc)
_MESSAGES = {
    400: ("Bad request", "BAD_REQUEST"),
    401: ("Invalid or missing credentials", "UNAUTHORIZED"),
    403: ("Insufficient permissions", "FORBIDDEN"),
    404: ("Not found", "NOT_FOUND"),
    405: ("Method not allowed", "METHOD_NOT_ALLOWED"),
    422: ("Validation error", "VALIDATION_ERROR"),
    429: ("Rate limit exceeded", "RATE_LIMIT_EXCEEDED"),
    500: ("Internal server error", "INTERNAL_ERROR"),
    502: ("Bad gateway", "BAD_GATEWAY"),
    503: ("Service unavailable", "SERVICE_UNAVAILABLE"),
}


def stamp(moment: datetime, form: int = 0) -> str:
    """Timestamps as the API writes them: mostly ``Z``, sometimes fractions or offsets."""
    moment = moment.astimezone(timezone.utc)
    if form == 1:
        return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")
    if form == 2:
        return moment.astimezone(timezone(timedelta(hours=2))).isoformat(timespec="seconds")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def record_key(resource: str, record: dict[str, Any]) -> str:
    """The id a record is known by: its ``id``, or the documented fallback when absent."""
    if record.get("id"):
        return str(record["id"])
    if resource == "schemas":
        return f"{record['schema_type']}:{record['table_name']}"
    return str(record["table_name"])


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


class ValidationError(Exception):
    """A 422 in the web framework's own shape, not the envelope."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(message)
        self.detail = [{"loc": ["query", where], "msg": message, "type": "value_error"}]


#: Routes the default instance lacks: ``GET /alerts`` is in no public source (the project
#: assumed it, shared/apis/datalinx.md 6.9), so an instance without it is plausible; the
#: tap warns once and skips ``datalinx_alerts``, and every other stream is complete.
DEFAULT_MISSING_ROUTES = frozenset({"alerts"})


# --------------------------------------------------------------------------- data model


@dataclass
class Token:
    value: str
    email: str
    issued_at: float
    expires_at: float
    accepted: bool = False  # some request carrying it has been served


@dataclass
class DatalinxData:
    """The seeded organization: workspaces, their resources, users, roles, service accounts."""

    seed: int
    scale: int
    workspaces: list[dict[str, Any]] = field(default_factory=list)
    #: workspace name -> resource -> records
    scoped: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    #: (workspace name, pipeline id) -> runs, newest first
    runs: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    org: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: Seconds a JWT lasts; tests shorten it.
    token_ttl: float = 3600.0
    #: Routes (resource names, e.g. ``alerts``) this instance does not have: several are
    #: in no public source, so a real instance may lack one. They answer the web
    #: framework's own ``404 {"detail": "Not Found"}`` and are left out of openapi.json.
    #: By default ``DEFAULT_MISSING_ROUTES``: the instance has no ``/alerts``.
    missing_routes: set[str] = field(default_factory=lambda: set(DEFAULT_MISSING_ROUTES))
    #: Override of the burst (tokens, refill per second); ``None`` follows the plan.
    burst: tuple[int, float] | None = None
    #: Instants of every successful login.
    logins: list[float] = field(default_factory=list)
    tokens: dict[str, Token] = field(default_factory=dict)
    #: Whether ``/openapi.json`` answers (an instance may not publish it), and which list
    #: routes its document leaves out.
    openapi_served: bool = True
    openapi_hidden: frozenset[str] = frozenset()
    #: A status (401 or 403) ``/openapi.json`` answers instead of the document: an
    #: instance behind a gateway that guards it, or whose document needs credentials.
    openapi_denied: int | None = None
    _now: datetime = _EPOCH
    _counter: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(f"datalinx:{self.seed}:{self.scale}")
        self.lock = threading.Lock()
        names = ["production", "staging", "marketing analytics"]
        names += [f"team-{n:02d}" for n in range(1, self.scale)]
        for index, name in enumerate(names):
            self._add_workspace(name, index)
        users = 12 * self.scale
        self.org["roles"] = [self._role(n) for n, _ in enumerate(("admin", "editor", "viewer"))]
        self.org["roles"] += [self._role(n) for n in range(3, 6)]
        self.org["users"] = [self._user(n) for n in range(users)]
        self.org["service-accounts"] = [self._service_account(n) for n in range(3 + self.scale)]

    # -- time and ids -----------------------------------------------------------------------

    def _tick(self, minutes: int = 37) -> datetime:
        self._now += timedelta(
            minutes=self.rng.randint(1, minutes), seconds=self.rng.randint(0, 59)
        )
        return self._now

    def _stamp(self, moment: datetime) -> str:
        return stamp(moment, self.rng.choice((0, 0, 0, 0, 0, 0, 1, 2)))

    def _id(self, prefix: str) -> str:
        self._counter += 1
        digest = hashlib.sha256(f"{self.seed}:{prefix}:{self._counter}".encode()).hexdigest()
        return f"{prefix}_{digest[:6]}{self._counter}"

    # -- seeding ----------------------------------------------------------------------------

    def _add_workspace(self, name: str, index: int) -> None:
        created = self._tick()
        ws = {
            "id": self._id("ws"),
            "name": name,
            "created_at": self._stamp(created),
            "updated_at": self._stamp(self._tick()),
            "config": {"description": f"{name.title()} workspace"},
        }
        self.workspaces.append(ws)
        rng = self.rng
        resources: dict[str, list[dict[str, Any]]] = {}
        self.scoped[name] = resources
        mappings = 150 if index == 0 else rng.randint(4, 14)
        counts = {
            "sources": rng.randint(3, 8),
            "schemas": rng.randint(6, 18),
            "mappings": mappings,
            "pipelines": rng.randint(3, 5),
            "audiences": 0 if index == 2 else rng.randint(2, 6),
            "queries": rng.randint(3, 9),
            "alerts": rng.randint(2, 7),
        }
        for resource, count in counts.items():
            resources[resource] = [self.make(name, resource, n) for n in range(count)]
        for n, pipeline in enumerate(resources["pipelines"]):
            runs = 0 if n == 1 else (130 if index == 0 and n == 0 else rng.randint(1, 40))
            self.runs[(name, pipeline["id"])] = []
            for _ in range(runs):
                self.add_run(name, pipeline["id"])

    def make(self, workspace: str, resource: str, n: int) -> dict[str, Any]:
        """One new record of a workspace resource."""
        rng = self.rng
        created = self._tick()
        times = {"created_at": self._stamp(created), "updated_at": self._stamp(self._tick(5))}
        if resource == "sources":
            connector = rng.choice(("postgresql", "snowflake", "databricks", "bigquery", "rest"))
            config: dict[str, Any] = {"host": f"{connector}-{n}.internal", "database": "crm"}
            if n % 2 == 0:
                config["user"] = "etl"
                config["password"] = f"pw-{rng.randrange(10**8):08d}"
            if connector == "rest":
                config = {"base_url": "https://api.example.com", "api_token": "tok-" + str(n)}
            return {
                "id": self._id("src"),
                "name": f"{connector}_{n}",
                "type": "api" if connector == "rest" else "database",
                "connector": connector,
                "status": rng.choice(("connected", "connected", "error")),
                "description": "",
                "config": config,
                **times,
            }
        if resource == "schemas":
            record: dict[str, Any] = {
                "id": self._id("sch"),
                "schema_type": rng.choice(("source", "target")),
                "table_name": f"table_{self._counter}",
                "name": f"table_{self._counter}",
                "source_id": None,
                # In the instance's OpenAPI document, not in the project's notes.
                "row_count": rng.randint(0, 10**6) if n % 3 else None,
                "columns": [
                    {"name": "id", "type": "string", "nullable": False, "description": "Key"},
                    {"name": "amount", "type": "number", "nullable": True, "description": ""},
                ],
                **times,
            }
            if n % 5 == 4:
                del record["id"]  # addressed by table name (pitfall 11)
            return record
        if resource == "mappings":
            self._counter += 1
            table = f"target_{self._counter}"
            record = {
                "id": f"map_{table}",
                "name": f"{table} mapping",
                "table_name": table,
                "source_table": f"crm.public.t{n}",
                "fields": [
                    {"target_field": "id", "mapping_type": "direct", "expression": "account_id"},
                    {"target_field": "x", "mapping_type": "expression", "expression": "a || b"},
                ],
                **times,
            }
            if n % 7 == 3:
                del record["id"]
            return record
        if resource == "pipelines":
            return {
                "id": self._id("pl"),
                "name": f"pipeline_{n}",
                "description": "",
                "status": rng.choice(("active", "paused")),
                "schedule": rng.choice(("0 2 * * *", None)),
                "last_run_at": None,
                "last_run_status": None,
                **times,
            }
        if resource == "audiences":
            return {
                "id": self._id("aud"),
                "name": f"segment_{n}",
                "description": "",
                "definition": {"all": [{"field": "ltv", "op": ">", "value": n * 100}]},
                "size": rng.randint(0, 5000),
                "status": "ready",
                **times,
            }
        if resource == "queries":
            return {
                "id": self._id("qry"),
                "name": f"query_{n}",
                "description": "",
                "sql": f"select {n} as n",
                "created_by": "usr_1",
                "last_run_at": self._stamp(self._tick(3)),
                **times,
            }
        if resource == "alerts":
            return {
                "id": self._id("alr"),
                "name": f"alert {n}",
                "type": rng.choice(("threshold", "drift", "pipeline_failure")),
                "severity": rng.choice(("info", "warning", "critical")),
                "status": rng.choice(("active", "resolved", "muted")),
                "target": f"table_{n}.column",
                "condition": {"metric": "completeness", "min": 0.98},
                "triggered_at": self._stamp(self._tick(3)),
                **times,
            }
        raise ValueError(resource)

    def add_run(self, workspace: str, pipeline_id: str) -> dict[str, Any]:
        rng = self.rng
        started = self._tick(90)
        status = rng.choice(("success", "success", "success", "failed", "running"))
        finished = None if status == "running" else started + timedelta(seconds=rng.randint(5, 900))
        run = {
            "id": self._id("run"),
            "pipeline_id": pipeline_id,
            "status": status,
            "started_at": self._stamp(started),
            "finished_at": None if finished is None else self._stamp(finished),
            "duration_seconds": None if finished is None else (finished - started).seconds,
            "records_processed": rng.randint(0, 10**6),
            "error": "connection reset" if status == "failed" else None,
            "triggered_by": rng.choice(("schedule", "manual", "api")),
        }
        self.runs[(workspace, pipeline_id)].insert(0, run)
        pipeline = next(p for p in self.scoped[workspace]["pipelines"] if p["id"] == pipeline_id)
        pipeline["last_run_at"] = run["started_at"]
        pipeline["last_run_status"] = status
        return run

    def _role(self, n: int) -> dict[str, Any]:
        names = ("admin", "editor", "viewer", "analyst", "auditor", "operator")
        return {
            "id": f"role_{n + 1}",
            "name": names[n],
            "description": f"{names[n].title()} role",
            "permissions": ["org.admin"] if n == 0 else ["workspace.read"],
            "is_system": n < 3,
            "created_at": self._stamp(self._tick()),
            "updated_at": self._stamp(self._tick()),
        }

    def _user(self, n: int) -> dict[str, Any]:
        return {
            "id": f"usr_{n + 1}",
            "email": EMAIL if n == 0 else f"user{n}@acme.example",
            "name": f"User {n}",
            "roles": ["admin"] if n == 0 else [self.rng.choice(("editor", "viewer", "analyst"))],
            "is_active": n % 9 != 8,
            "created_at": self._stamp(self._tick()),
            "last_login_at": self._stamp(self._tick()),
        }

    def _service_account(self, n: int) -> dict[str, Any]:
        return {
            "id": f"sa_{n + 1}",
            "name": f"automation-{n}",
            "description": "",
            "role": "admin" if n == 0 else "viewer",
            "created_at": self._stamp(self._tick()),
            "last_used_at": self._stamp(self._tick()),
            "api_key_prefix": f"dlx_{n:04x}",
        }

    # -- what tests read and change -------------------------------------------------------------

    def workspace(self, name: str) -> dict[str, Any] | None:
        return next((ws for ws in self.workspaces if ws["name"] == name), None)

    def rename_workspace(self, old: str, new: str) -> dict[str, Any]:
        """Rename a workspace as its admin would: same id and resources, a new name (the
        one ``X-Workspace`` must now carry), a later ``updated_at``."""
        with self.lock:
            ws = self.workspace(old)
            if ws is None or self.workspace(new) is not None:
                raise KeyError(f"cannot rename workspace {old!r} to {new!r}")
            ws["name"] = new
            ws["updated_at"] = self._stamp(self._tick(5))
            self.scoped[new] = self.scoped.pop(old)
            for name, pipeline_id in [k for k in self.runs if k[0] == old]:
                self.runs[(new, pipeline_id)] = self.runs.pop((name, pipeline_id))
            return ws

    def serves(self, stream: str) -> bool:
        """Whether the instance has the list route(s) of ``datalinx_<stream>``; a stream
        whose route is missing is skipped by the tap (one warning), not delivered."""
        needed = {"pipelines"} if stream == "pipeline_runs" else {stream.replace("_", "-")}
        return not needed & self.missing_routes

    def keys(self, stream: str) -> set[Any]:
        """Every key the stream ``datalinx_<stream>`` should deliver (none for a stream
        whose route the instance lacks)."""
        if not self.serves(stream):
            return set()
        if stream == "workspaces":
            return {ws["id"] for ws in self.workspaces}
        if stream in ("users", "roles", "service_accounts"):
            return {r["id"] for r in self.org[stream.replace("_", "-")]}
        if stream == "pipeline_runs":
            return {(ws, run["id"]) for (ws, _), runs in self.runs.items() for run in runs}
        return {
            (ws, record_key(stream, record))
            for ws, resources in self.scoped.items()
            for record in resources[stream]
        }

    def advance(self, new: int = 1, changed: int = 1) -> datetime:
        """Move time on: ``new`` records and ``changed`` updated ones per workspace resource,
        and ``new`` runs per pipeline. Returns the instant the changes were made after."""
        with self.lock:
            self._now = max(self._now, datetime.now(timezone.utc)) + timedelta(days=1)
            since = self._now
            for ws, resources in self.scoped.items():
                for resource, records in resources.items():
                    for record in records[:changed]:
                        record["updated_at"] = self._stamp(self._tick(5))
                    for _ in range(new):
                        records.append(self.make(ws, resource, len(records)))
                for pipeline in resources["pipelines"]:
                    self.runs.setdefault((ws, pipeline["id"]), [])
                    for _ in range(new):
                        self.add_run(ws, pipeline["id"])
            return since

    def change(self, generation: int) -> list[str]:
        """Between two syncs (``Sandbox.change``): a pipeline's oldest run is purged
        (run history retention), a user is removed from the organization and a custom
        role that no user holds is deleted."""
        said: list[str] = []
        with self.lock:
            (ws, pipeline), runs = max(self.runs.items(), key=lambda item: len(item[1]))
            if runs:
                run = runs.pop()
                said.append(f"datalinx pipeline {pipeline} ({ws}): run {run['id']} purged")
            users = self.org["users"]
            if len(users) > 1:
                user = users.pop()
                said.append(f"datalinx user {user['id']}: removed")
            held = {name for u in users for name in u["roles"]}
            roles = self.org["roles"]
            free = [r for r in roles if not r["is_system"] and r["name"] not in held]
            if free:
                roles.remove(free[-1])
                said.append(f"datalinx role {free[-1]['name']}: deleted")
        return said

    # -- tokens -----------------------------------------------------------------------------------

    def issue_token(self, email: str, now: float) -> Token:
        header = _b64({"alg": "HS256", "typ": "JWT"})
        with self.lock:
            self._counter += 1
            payload = _b64({"sub": email, "org": ORGANIZATION, "n": self._counter})
            signature = hashlib.sha256(f"{self.seed}:{self._counter}".encode()).hexdigest()
            token = Token(f"{header}.{payload}.{signature[:32]}", email, now, now + self.token_ttl)
            self.tokens[token.value] = token
            self.logins.append(now)
        return token


def _b64(value: dict[str, Any]) -> str:
    raw = json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# --------------------------------------------------------------------------- the API


def _api(fn: Callable[[DatalinxPlatform, Request], Response]) -> Callable[..., Response]:
    def wrapper(self: DatalinxPlatform, req: Request) -> Response:
        try:
            return fn(self, req)
        except ApiError as exc:
            return self.failed(exc.status, exc.message, exc.code)
        except ValidationError as exc:
            return json_response(422, {"detail": exc.detail})

    wrapper.__name__ = fn.__name__
    return wrapper


@register_platform
class DatalinxPlatform(Platform):
    name = "datalinx"
    base_path = "/datalinx/api"
    default_limit = PLANS["free"][0], 60.0
    rate_limit_headers = True
    reset_encoding = "epoch-s"
    limit_retry_after = "reset"  # no Retry-After is documented: Remaining 0 + Reset
    secret_headers = ("authorization", "x-api-key")

    def __init__(self, seed: int, scale: int) -> None:
        self.data = DatalinxData(seed, scale)
        self._buckets: dict[str, list[float]] = {}  # key -> [tokens, last refill]
        self._bucket_lock = threading.Lock()
        super().__init__(seed, scale)

    @property
    def model(self) -> DatalinxData:
        return self.data

    def register_routes(self, router: Router) -> None:
        router.post("/auth/login", self.login, public=True)
        router.get("/openapi.json", self.openapi, public=True)
        router.get("/workspaces", self.list_workspaces)
        for resource in WORKSPACE_RESOURCES:
            router.get(f"/{resource}", self._scoped_list(resource))
        router.get("/pipelines/{pipeline_id}/runs", self.list_runs)
        for resource in ORG_RESOURCES:
            router.get(f"/{resource}", self._admin_list(resource))

    # -- framework hooks ------------------------------------------------------------------------

    def identify(self, req: Request) -> Identity:
        key = req.header("x-api-key")
        if key is not None:
            if key == API_KEY:
                req.context["admin"] = True
                return Identity(ORGANIZATION, True)
            if key == VIEWER_API_KEY:
                req.context["admin"] = False
                return Identity(ORGANIZATION, True)
            return Identity(f"key:{hashlib.sha256(key.encode()).hexdigest()[:12]}", False)
        auth = req.header("authorization")
        if not auth:
            return Identity("anonymous", False)
        scheme, _, value = auth.strip().partition(" ")
        token = self.data.tokens.get(value.strip()) if scheme.lower() == "bearer" else None
        if token is None:
            return Identity("anonymous", False)
        if req.now >= token.expires_at:
            req.context["expired"] = True
            return Identity(ORGANIZATION, False)
        req.context["admin"] = token.email == EMAIL
        token.accepted = True
        return Identity(ORGANIZATION, True)

    def _bearer_token(self, req: Request) -> Token | None:
        scheme, _, value = (req.header("authorization") or "").strip().partition(" ")
        if req.header("x-api-key") is not None or scheme.lower() != "bearer":
            return None
        return self.data.tokens.get(value.strip())

    def credential_can_expire(self, req: Request) -> bool:
        # Only a JWT that has already worked: a token refused on its very first use is a
        # different failure (the tap rightly gives up on it), not an expiry.
        token = self._bearer_token(req)
        return token is not None and token.accepted and req.now < token.expires_at

    def expire_credential(self, req: Request) -> Response:
        token = self._bearer_token(req)
        if token is not None:
            token.expires_at = min(token.expires_at, req.now)
        return self.failed(401, "Token has expired", "TOKEN_EXPIRED")

    def failed(
        self, status: int, message: str, code: str, headers: list[tuple[str, str]] | None = None
    ) -> Response:
        body = {"status": "failed", "message": message, "error_code": code}
        return json_response(status, body, headers)

    def error(
        self,
        status: int,
        message: str,
        description: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> Response:
        text, code = _MESSAGES.get(status, (reason_phrase(status), "ERROR"))
        return self.failed(status, message or text, code, headers)

    def unauthorized(self, req: Request) -> Response:
        if req.context.get("expired"):
            return self.failed(401, "Token has expired", "TOKEN_EXPIRED")
        return self.failed(401, "Invalid or missing credentials", "UNAUTHORIZED")

    def not_found(self, req: Request) -> Response:
        return self.failed(404, f"Route {req.path or '/'} not found", "NOT_FOUND")

    def forced_error(self, req: Request, status: int) -> Response:
        text, code = _MESSAGES.get(status, (reason_phrase(status), "ERROR"))
        return self.failed(status, text, code)

    def over_limit(self, req: Request, verdict: Verdict) -> Response:
        return self.failed(
            429,
            f"Rate limit of {verdict.limit} requests per minute exceeded",
            "RATE_LIMIT_EXCEEDED",
        )

    def decorate(self, req: Request, resp: Response) -> None:
        """The plan's burst: a token bucket on top of the per-minute window."""
        limit = resp.header("X-RateLimit-Limit")
        if limit is None or resp.status == 429:
            return
        if self.data.burst is not None:
            capacity, refill = float(self.data.burst[0]), self.data.burst[1]
        else:
            per_minute = int(limit)
            plan = next((b for lim, b in PLANS.values() if lim == per_minute), per_minute // 6)
            capacity, refill = float(max(10, plan)), per_minute / 60.0
        key = "org" if req.context.get("admin") is not None else "anonymous"
        with self._bucket_lock:
            tokens, last = self._buckets.get(key, [capacity, req.now])
            tokens = min(capacity, tokens + (req.now - last) * refill)
            if tokens >= 1.0:
                self._buckets[key] = [tokens - 1.0, req.now]
                return
            self._buckets[key] = [tokens, req.now]
        ready = req.now + (1.0 - tokens) / refill
        rejected = self.failed(
            429, f"Burst of {int(capacity)} requests exceeded", "RATE_LIMIT_EXCEEDED"
        )
        resp.status, resp.body = rejected.status, rejected.body
        resp.set_header("X-RateLimit-Remaining", "0")
        resp.set_header("X-RateLimit-Reset", str(math.ceil(ready)))

    # -- helpers -------------------------------------------------------------------------------

    def _int_arg(self, req: Request, name: str, default: int) -> int:
        raw = req.arg(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ValidationError(name, "value is not a valid integer") from None
        if value < 1:
            raise ValidationError(name, "ensure this value is greater than or equal to 1")
        return value

    def page(self, req: Request, records: list[dict[str, Any]]) -> Response:
        page = self._int_arg(req, "page", 1)
        size = min(self._int_arg(req, "page_size", DEFAULT_PAGE_SIZE), MAX_PAGE_SIZE)
        total = len(records)
        body = {
            "status": "success",
            "data": with_unknown_fields(records[(page - 1) * size : page * size]),
            "pagination": {
                "page": page,
                "page_size": size,
                "total_items": total,
                "total_pages": math.ceil(total / size),
            },
        }
        return json_response(200, body)

    def _workspace(self, req: Request) -> str:
        name = req.header("x-workspace")
        if name is None:
            return str(self.data.workspaces[0]["name"])  # the default workspace (pitfall 4)
        if name not in self.data.scoped:
            raise ApiError(404, "Workspace not found", "WORKSPACE_NOT_FOUND")
        return name

    # -- routes ------------------------------------------------------------------------------

    @_api
    def login(self, req: Request) -> Response:
        try:
            body = req.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or "email" not in body or "password" not in body:
            raise ValidationError("body", "email and password are required")
        if body["email"] != EMAIL or body["password"] != PASSWORD:
            raise ApiError(401, "Invalid email or password", "INVALID_CREDENTIALS")
        token = self.data.issue_token(EMAIL, time.time())
        ttl = self.data.token_ttl
        expires_in: float | int = int(ttl) if float(ttl).is_integer() else ttl
        # The documented login answer is not wrapped in the envelope.
        payload = {"access_token": token.value, "token_type": "bearer", "expires_in": expires_in}
        return json_response(200, payload)

    def openapi(self, req: Request) -> Response:
        if not self.data.openapi_served:
            return json_response(404, {"detail": "Not Found"})
        denied = self.data.openapi_denied
        if denied is not None:
            return self.failed(denied, "Not authenticated", "UNAUTHORIZED")
        # Routes the instance lacks are not in its document either.
        hidden = self.data.openapi_hidden | {f"/{r}" for r in self.data.missing_routes}
        return json_response(200, datalinx_openapi.document(frozenset(hidden)))

    @_api
    def list_workspaces(self, req: Request) -> Response:
        return self.page(req, self.data.workspaces)

    def _scoped_list(self, resource: str) -> Callable[[Request], Response]:
        @_api
        def handler(self: DatalinxPlatform, req: Request) -> Response:
            if resource in self.data.missing_routes:
                return json_response(404, {"detail": "Not Found"})
            return self.page(req, self.data.scoped[self._workspace(req)][resource])

        return lambda req: handler(self, req)

    @_api
    def list_runs(self, req: Request) -> Response:
        workspace = self._workspace(req)
        runs = self.data.runs.get((workspace, req.params["pipeline_id"]))
        if runs is None:
            raise ApiError(404, "Pipeline not found", "PIPELINE_NOT_FOUND")
        return self.page(req, runs)

    def _admin_list(self, resource: str) -> Callable[[Request], Response]:
        @_api
        def handler(self: DatalinxPlatform, req: Request) -> Response:
            if not req.context.get("admin"):
                raise ApiError(403, "Permission 'org.admin' required", "PERMISSION_DENIED")
            return self.page(req, self.data.org[resource])

        return lambda req: handler(self, req)
