"""Datalinx streams, credentials and budget against requests-mock, on a fake clock."""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable
from typing import Any

import pytest
import requests_mock as rm

from tap_dataplatforms.core.errors import PlatformAuthError, SyncFailedError
from tap_dataplatforms.core.http import PlatformStream
from tap_dataplatforms.core.redact import redact
from tap_dataplatforms.datalinx.client import looks_secret
from tests.helpers import FakeClock, make_tap, run_sync

BASE = "https://acme.datalinx.test/api"
KEY = "dlx-unit-key-0001"
EMAIL = "etl@acme.example"
PASSWORD = "dlx-unit-password-0001"
WORKSPACES = ["production", "staging"]
#: The mocked server clamps every page to this size (and says so).
SERVER_PAGE = 2


def config(**extra: Any) -> dict[str, Any]:
    return {"datalinx": {"api_url": BASE, "api_key": KEY, **extra}}


def jwt_config(**extra: Any) -> dict[str, Any]:
    return {"datalinx": {"api_url": BASE, "email": EMAIL, "password": PASSWORD, **extra}}


def envelope(records: list[dict[str, Any]], page: int) -> dict[str, Any]:
    chunk = records[(page - 1) * SERVER_PAGE : page * SERVER_PAGE]
    return {
        "status": "success",
        "data": chunk,
        "pagination": {
            "page": page,
            "page_size": SERVER_PAGE,
            "total_items": len(records),
            "total_pages": math.ceil(len(records) / SERVER_PAGE),
        },
    }


def failed(message: str, code: str) -> dict[str, Any]:
    return {"status": "failed", "message": message, "error_code": code}


def scoped_records(resource: str, workspace: str) -> list[dict[str, Any]]:
    count = {"sources": 3, "schemas": 2, "mappings": 1, "pipelines": 2}.get(resource, 1)
    records = []
    for n in range(count):
        record: dict[str, Any] = {
            "id": f"{resource[:3]}_{workspace[:4]}_{n}",
            "created_at": "2024-02-01T09:00:00Z",
            "updated_at": f"2024-04-0{n + 1}T08:00:00.250+02:00",
        }
        if resource == "schemas" and n == 1:
            del record["id"]
            record.update(schema_type="target", table_name="customers")
        if resource == "sources":
            record["config"] = {"host": "db", "password": "hunter22", "auth": {"api_token": "t"}}
        records.append(record)
    return records


class Api:
    """A small Datalinx: two workspaces, a few records each, admin routes by key."""

    def __init__(self, mocker: rm.Mocker) -> None:
        self.mocker = mocker
        self.clock_step: Callable[[], None] = lambda: None
        self.forbidden_admin = False
        workspaces = [
            {"id": f"ws_{n}", "name": name, "created_at": "2024-01-15T10:30:00Z"}
            for n, name in enumerate(WORKSPACES)
        ]
        # An instance without a published OpenAPI document: the written schemas apply.
        self.mocker.get(BASE + "/openapi.json", status_code=404, json={"detail": "Not Found"})
        self.get("/workspaces", lambda request: workspaces, scoped=False)
        for resource in ("sources", "schemas", "mappings", "pipelines", "audiences"):
            self.get(f"/{resource}", self._scoped(resource))
        for resource in ("queries", "alerts"):
            self.get(f"/{resource}", lambda request: [])
        for workspace in WORKSPACES:
            for pipeline in scoped_records("pipelines", workspace):
                runs = [{"id": f"run_{pipeline['id']}_{n}", "status": "success"} for n in range(3)]
                self.get(f"/pipelines/{pipeline['id']}/runs", lambda request, r=runs: r)
        for resource in ("users", "roles", "service-accounts"):
            self.get(f"/{resource}", self._admin(resource), scoped=False)

    def _scoped(self, resource: str) -> Callable[[Any], list[dict[str, Any]]]:
        return lambda request: scoped_records(resource, request.headers["X-Workspace"])

    def _admin(self, resource: str) -> Callable[[Any], list[dict[str, Any]]]:
        def records(request: Any) -> list[dict[str, Any]]:
            if self.forbidden_admin:
                raise Forbidden
            return [{"id": f"{resource}_{n}"} for n in range(3)]

        return records

    def get(self, path: str, records: Callable[[Any], Any], *, scoped: bool = True) -> None:
        def respond(request: Any, context: Any) -> dict[str, Any]:
            self.clock_step()
            assert ("X-Workspace" in request.headers) == scoped, request.url
            try:
                data = records(request)
            except Forbidden:
                context.status_code = 403
                return failed("Permission 'org.admin' required", "PERMISSION_DENIED")
            return envelope(data, int(request.qs["page"][0]))

        self.mocker.get(BASE + path, json=respond)

    def requests(self, path: str) -> list[Any]:
        return [r for r in self.mocker.request_history if r.path == "/api" + path]

    def api_calls(self) -> list[Any]:
        """Every request but the read of the (public) OpenAPI document at discovery."""
        return [r for r in self.mocker.request_history if r.path != "/api/openapi.json"]


class Forbidden(Exception):
    pass


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PlatformStream, "retry_base_seconds", 0.001)


@pytest.fixture
def api(requests_mock: rm.Mocker) -> Api:
    return Api(requests_mock)


def login_answer(token: str, expires_in: float = 3600) -> dict[str, Any]:
    return {"access_token": token, "token_type": "bearer", "expires_in": expires_in}


# -- streams, pages, records ----------------------------------------------------------------


def test_api_key_streams_pages_and_records(api: Api) -> None:
    out = run_sync(make_tap(config(max_requests_per_second=1000), clock=FakeClock()))
    history = api.api_calls()
    assert all(r.headers["X-API-Key"] == KEY for r in history)
    assert all("Authorization" not in r.headers for r in history)
    # Three sources at two per page: exactly two pages per workspace, no empty third.
    sources = api.requests("/sources")
    assert [(r.headers["X-Workspace"], r.qs["page"]) for r in sources] == [
        ("production", ["1"]),
        ("production", ["2"]),
        ("staging", ["1"]),
        ("staging", ["2"]),
    ]
    assert all(r.qs["page_size"] == ["100"] for r in sources)
    assert {(r["workspace"], r["id"]) for r in out.records["datalinx_sources"]} == {
        (ws, f"sou_{ws[:4]}_{n}") for ws in WORKSPACES for n in range(3)
    }
    source = out.records["datalinx_sources"][0]
    assert source["config"] == {"host": "db", "auth": {}}
    assert source["updated_at"] == "2024-04-01T06:00:00.250000+00:00"
    schemas = {r["id"] for r in out.records["datalinx_schemas"] if r["workspace"] == "staging"}
    assert schemas == {"sch_stag_0", "target:customers"}
    runs = out.records["datalinx_pipeline_runs"]
    assert len(runs) == 2 * 2 * 3
    assert {r["pipeline_id"] for r in runs} == {
        f"pip_{ws[:4]}_{n}" for ws in WORKSPACES for n in (0, 1)
    }
    assert len(out.records["datalinx_users"]) == 3
    assert out.records["datalinx_queries"] == []


def test_configured_workspaces_only_and_a_missing_one_fails_its_partition(api: Api) -> None:
    tap = make_tap(config(workspaces=["staging", "gone"]), clock=FakeClock())
    out = run_sync(tap, finish=False)
    assert [r["name"] for r in out.records["datalinx_workspaces"]] == ["staging"]
    assert {r.headers["X-Workspace"] for r in api.requests("/sources")} == {"staging"}
    with pytest.raises(SyncFailedError, match="workspace 'gone' not found"):
        tap.finish()


def test_a_missing_workspace_is_reported_once_under_partition(api: Api) -> None:
    """A configured name no workspace has has no id to hash: partition 0 alone reports it."""
    wanted = config(workspaces=["staging", "gone"])
    taps = [
        make_tap({**wanted, "partition": {"index": i, "count": 3}}, clock=FakeClock())
        for i in range(3)
    ]
    for tap in taps:
        run_sync(tap, finish=False)
    with pytest.raises(SyncFailedError, match="workspace 'gone' not found"):
        taps[0].finish()
    for tap in taps[1:]:
        tap.finish()


def test_envelope_error_is_the_message_and_the_sync_goes_on(api: Api) -> None:
    api.mocker.get(
        BASE + "/mappings",
        status_code=404,
        json=failed("Workspace not found", "WORKSPACE_NOT_FOUND"),
    )
    tap = make_tap(config(), clock=FakeClock())
    out = run_sync(tap, finish=False)
    assert len(out.records["datalinx_sources"]) == 6
    with pytest.raises(SyncFailedError) as failure:
        tap.finish()
    text = str(failure.value)
    assert "datalinx_mappings [workspace=production]" in text
    assert "HTTP 404" in text
    assert "Workspace not found (WORKSPACE_NOT_FOUND)" in text


def test_validation_error_in_the_framework_shape(api: Api) -> None:
    detail = [{"loc": ["query", "page_size"], "msg": "too large", "type": "value_error"}]
    api.mocker.get(BASE + "/alerts", status_code=422, json={"detail": detail})
    tap = make_tap(config(), clock=FakeClock())
    run_sync(tap, finish=False)
    with pytest.raises(SyncFailedError, match=r"HTTP 422 .*: query\.page_size: too large"):
        tap.finish()


def test_missing_pagination_is_one_page(api: Api) -> None:
    api.mocker.get(BASE + "/queries", json={"status": "success", "data": [{"id": "q1"}]})
    out = run_sync(make_tap(config(), clock=FakeClock()))
    assert len(api.requests("/queries")) == 2  # one per workspace
    assert {(r["workspace"], r["id"]) for r in out.records["datalinx_queries"]} == {
        ("production", "q1"),
        ("staging", "q1"),
    }


def test_secret_looking_keys() -> None:
    assert all(map(looks_secret, ["password", "api_token", "apiKey", "private_key", "SECRET"]))
    assert not any(map(looks_secret, ["host", "database", "user", "keyspace_name", "port"]))


# -- organization streams without org.admin ---------------------------------------------------


def test_forbidden_admin_routes_skip_all_three_with_one_warning(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    api.forbidden_admin = True
    caplog.set_level(logging.WARNING)
    tap = make_tap(config(), clock=FakeClock())
    out = run_sync(tap)  # no SyncFailedError
    for stream in ("datalinx_users", "datalinx_roles", "datalinx_service_accounts"):
        assert out.records[stream] == []
    admin = [api.requests(f"/{path}") for path in ("users", "roles", "service-accounts")]
    assert [len(requests) for requests in admin] == [1, 1, 1]
    warnings = [r.getMessage() for r in caplog.records if "org.admin" in r.getMessage()]
    assert len(warnings) == 1
    assert "organization streams (users, roles, service accounts)" in warnings[0]
    assert "Permission 'org.admin' required (PERMISSION_DENIED)" in warnings[0]
    assert len(out.records["datalinx_sources"]) == 6


# -- JWT login ---------------------------------------------------------------------------------


def test_one_login_serves_every_stream(api: Api) -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJl"
    login = api.mocker.post(BASE + "/auth/login", json=login_answer(token))
    out = run_sync(make_tap(jwt_config(), clock=FakeClock()))
    assert login.call_count == 1
    assert login.last_request.json() == {"email": EMAIL, "password": PASSWORD}
    assert "Authorization" not in login.last_request.headers
    data = [r for r in api.api_calls() if r.method == "GET"]
    assert data
    assert all(r.headers["Authorization"] == f"Bearer {token}" for r in data)
    assert all("X-API-Key" not in r.headers for r in data)
    assert redact(f"token {token} password {PASSWORD}") == "token *** password ***"
    assert len(out.records["datalinx_users"]) == 3


def test_enveloped_login_answer_is_accepted(api: Api) -> None:
    api.mocker.post(
        BASE + "/auth/login", json={"status": "success", "data": login_answer("tok-enveloped-1")}
    )
    run_sync(make_tap(jwt_config(), clock=FakeClock()))
    data = [r for r in api.api_calls() if r.method == "GET"]
    assert all(r.headers["Authorization"] == "Bearer tok-enveloped-1" for r in data)


def test_token_renewed_before_it_runs_out_once_per_lifetime(api: Api) -> None:
    clock = FakeClock()
    issued: list[tuple[str, float]] = []

    def login(request: Any, context: Any) -> dict[str, Any]:
        token = f"tok-{len(issued):04d}"
        issued.append((token, clock.monotonic()))
        return login_answer(token, expires_in=100)

    api.mocker.post(BASE + "/auth/login", json=login)
    api.clock_step = lambda: setattr(clock, "now", clock.now + 15)  # each request takes 15 s
    run_sync(make_tap(jwt_config(max_requests_per_second=1000), clock=clock))
    data = [r for r in api.api_calls() if r.method == "GET"]
    elapsed = clock.monotonic()
    assert elapsed > 300
    # Renewed 20 s (a fifth of the life, under a minute) before expiry: never expired in
    # use, and never more than one login per lifetime.
    assert elapsed / 100 <= len(issued) <= math.ceil(elapsed / 80) + 1
    lifetime = dict(issued)
    sent_at = 0.0
    for request in data:
        token = request.headers["Authorization"].removeprefix("Bearer ")
        assert sent_at - lifetime[token] < 100
        sent_at += 15
    gaps = [b[1] - a[1] for a, b in itertools.pairwise(issued)]
    assert all(gap >= 75 for gap in gaps), gaps


def test_a_401_logs_in_once_more(api: Api) -> None:
    tokens = iter(["tok-first-1", "tok-second-2"])
    login = api.mocker.post(
        BASE + "/auth/login", json=lambda request, context: login_answer(next(tokens))
    )
    presented: list[str] = []

    def roles(request: Any, context: Any) -> dict[str, Any]:
        presented.append(request.headers["Authorization"])
        if len(presented) == 1:
            context.status_code = 401
            return failed("Token has expired", "TOKEN_EXPIRED")
        return envelope([{"id": "role_1"}], 1)

    api.mocker.get(BASE + "/roles", json=roles)
    out = run_sync(make_tap(jwt_config(), clock=FakeClock()))
    assert login.call_count == 2
    assert presented == [
        "Bearer tok-first-1",
        "Bearer tok-second-2",
    ]
    assert out.records["datalinx_roles"] == [{"id": "role_1"}]


def test_a_401_after_a_fresh_login_ends_the_sync_without_a_loop(api: Api) -> None:
    tokens = (f"tok-{n:04d}" for n in range(100))
    login = api.mocker.post(
        BASE + "/auth/login", json=lambda request, context: login_answer(next(tokens))
    )
    api.mocker.get(
        BASE + "/workspaces", status_code=401, json=failed("Invalid token", "UNAUTHORIZED")
    )
    tap = make_tap(jwt_config(), clock=FakeClock())
    with pytest.raises(PlatformAuthError, match=r"Datalinx: HTTP 401 .*Invalid token"):
        run_sync(tap)
    assert login.call_count == 2
    assert len(api.requests("/workspaces")) == 2


def test_wrong_password_fails_fast_naming_the_platform(api: Api) -> None:
    api.mocker.post(
        BASE + "/auth/login",
        status_code=401,
        json=failed("Invalid email or password", "INVALID_CREDENTIALS"),
    )
    tap = make_tap(jwt_config(), clock=FakeClock())
    with pytest.raises(PlatformAuthError) as failure:
        run_sync(tap)
    text = str(failure.value)
    assert text.startswith("Datalinx: HTTP 401")
    assert "Invalid email or password (INVALID_CREDENTIALS)" in text
    assert PASSWORD not in text
    assert [r.method for r in api.api_calls()] == ["POST"]


# -- budget --------------------------------------------------------------------------------------


def test_default_budget_is_paced_one_a_second(api: Api) -> None:
    clock = FakeClock()
    sent: list[float] = []
    api.clock_step = lambda: sent.append(clock.monotonic())
    run_sync(make_tap(config(workspaces=["staging"]), clock=clock))
    assert len(sent) > 15
    # One a second (with the pacing's room), never the plan's burst of 10 at once: the
    # budget holds in every rolling second.
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert all(1.0 <= gap <= 1.06 for gap in gaps), gaps
    assert max(sum(1 for t in sent if s <= t < s + 1) for s in sent) == 1


def test_few_remaining_requests_are_spread_until_the_reset(requests_mock: rm.Mocker) -> None:
    clock = FakeClock()
    reset = int(clock.time()) + 40

    def answer(request: Any, context: Any) -> dict[str, Any]:
        context.headers["X-RateLimit-Limit"] = "60"
        context.headers["X-RateLimit-Remaining"] = "3"
        context.headers["X-RateLimit-Reset"] = str(reset)
        return {"status": "success", "data": [{"id": "ws_1", "name": "w"}]}

    requests_mock.get(BASE + "/workspaces", json=answer)
    tap = make_tap(config(), clock=clock)
    stream = tap.streams["datalinx_workspaces"]
    assert isinstance(stream, PlatformStream)
    list(stream.request_records(None))
    # Three left for 40 s: the next request waits a quarter of it.
    assert stream.budget.paused_for() == pytest.approx(10, abs=1)


def test_a_server_ignoring_page_cannot_loop(requests_mock: rm.Mocker) -> None:
    def always_first(request: Any, context: Any) -> dict[str, Any]:
        # Page 1 of 2, whatever was asked.
        return envelope([{"id": "ws_1", "name": "w"}, {"id": "ws_2", "name": "v"}] * 2, 1)

    requests_mock.get(BASE + "/workspaces", json=always_first)
    tap = make_tap(config(), clock=FakeClock())
    stream = tap.streams["datalinx_workspaces"]
    assert isinstance(stream, PlatformStream)
    assert len(list(stream.request_records(None))) == 4
    listed = [r for r in requests_mock.request_history if r.path == "/api/workspaces"]
    assert len(listed) == 2


def test_workspace_names_beyond_latin1_go_out_as_utf8(requests_mock: rm.Mocker) -> None:
    name = "\u00c5lesund \u2013 prod"  # an en dash is beyond Latin-1
    requests_mock.get(BASE + "/workspaces", json=envelope([{"id": "ws_1", "name": name}], 1))
    seen: list[Any] = []

    def sources(request: Any, context: Any) -> dict[str, Any]:
        seen.append(request.headers["X-Workspace"])
        return envelope([{"id": "src_1"}], 1)

    requests_mock.get(BASE + "/sources", json=sources)
    catalog_tap = make_tap(config())
    selected = {"datalinx_workspaces", "datalinx_sources"}
    for stream in catalog_tap.streams.values():
        stream.selected = stream.name in selected
    out = run_sync(catalog_tap)
    assert seen == [name.encode("utf-8")]
    assert out.records["datalinx_sources"][0]["workspace"] == name


def test_start_date_filters_on_the_client(api: Api) -> None:
    out = run_sync(make_tap({**config(), "start_date": "2024-04-02T00:00:00Z"}, clock=FakeClock()))
    # Sources were updated on April 1, 2 and 3 (06:00 UTC): two of three pass.
    assert sorted(r["id"] for r in out.records["datalinx_sources"]) == [
        "sou_prod_1",
        "sou_prod_2",
        "sou_stag_1",
        "sou_stag_2",
    ]
    assert len(api.requests("/sources")) == 4  # every page is still read
