"""Datalinx against the sandbox: short-lived tokens, plans and bursts, a key without
``org.admin``, increments, and credentials that fail before any record."""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from dataplatforms_sandbox import CREDENTIALS, Sandbox
from dataplatforms_sandbox.datalinx import PLANS, VIEWER_API_KEY, record_key
from tap_dataplatforms.core.errors import PlatformAuthError
from tap_dataplatforms.core.partition import partition_of
from tests.budget_at_server import cpu_burner
from tests.helpers import SyncOutput, make_tap, run_sync

ROOMY = {"datalinx": (100_000, 60.0)}
SCOPED = (
    "sources",
    "schemas",
    "mappings",
    "pipelines",
    "pipeline_runs",
    "audiences",
    "queries",
    "alerts",
)
ORGANIZATION = ("users", "roles", "service_accounts")
INCREMENTAL = ("sources", "schemas", "mappings", "pipelines", "audiences", "queries", "alerts")
ORG_PATHS = ("/workspaces", "/users", "/roles", "/service-accounts", "/openapi.json")


def datalinx_config(sb: Sandbox, *, login: bool = False, **extra: Any) -> dict[str, Any]:
    creds = CREDENTIALS["datalinx"]
    block: dict[str, Any] = {"api_url": sb.base_url("datalinx")}
    if login:
        block.update(email=creds["email"], password=creds["password"])
    else:
        block["api_key"] = creds["api_key"]
    block.update(extra)
    return {"datalinx": block}


def keys(out: SyncOutput, stream: str) -> list[Any]:
    records = out.records[f"datalinx_{stream}"]
    if stream in SCOPED:
        return [(r["workspace"], r["id"]) for r in records]
    return [r["id"] for r in records]


def assert_complete(sb: Sandbox, out: SyncOutput, streams: tuple[str, ...]) -> None:
    """Every stream the instance serves is complete; one whose route it lacks (the
    default sandbox has no ``/alerts``) is skipped, not delivered."""
    for stream in streams:
        if not sb.datalinx.serves(stream):
            assert not out.records.get(f"datalinx_{stream}"), stream
        got = keys(out, stream)
        assert len(got) == len(set(got)), f"duplicates in {stream}"
        assert set(got) == sb.datalinx.keys(stream), stream


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    sb = Sandbox(seed=5, scale=1, limits=ROOMY).start()
    yield sb
    sb.stop()


def test_tokens_expiring_every_two_seconds_full_sync_no_429_one_login_per_expiry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ttl = 2.0
    per_minute, _burst = PLANS["pro"]
    sb = Sandbox(seed=11, scale=1, limits={"datalinx": (per_minute, 60.0)}).start()
    try:
        sb.datalinx.token_ttl = ttl
        caplog.set_level(logging.DEBUG)
        config = datalinx_config(sb, login=True, max_requests_per_second=per_minute / 60)
        started = time.monotonic()
        out = run_sync(make_tap(config))
        elapsed = time.monotonic() - started
        log = sb.request_log(platform="datalinx")
    finally:
        sb.stop()
    assert_complete(sb, out, ("workspaces", *SCOPED, *ORGANIZATION))
    statuses = [entry["status"] for entry in log]
    assert 429 not in statuses
    assert 401 not in statuses  # renewed before expiry, never after
    logins = sb.datalinx.logins
    assert elapsed > 3 * ttl  # the tokens really did run out during the sync
    assert len(logins) >= 3
    gaps = [b - a for a, b in itertools.pairwise(logins)]
    assert min(gaps) >= 0.8 * ttl - 0.05, gaps  # at most one login per token lifetime
    # Workspace on every scoped request, by name; never on organization requests.
    for entry in log:
        headers = entry["request_headers"]
        if entry["path"] in ORG_PATHS or entry["method"] == "POST":
            assert "x-workspace" not in headers
        else:
            assert headers["x-workspace"] in {ws["name"] for ws in sb.datalinx.workspaces}
    # Neither the password nor any token reached a log line or the output.
    text = caplog.text + json.dumps(out.records)
    assert CREDENTIALS["datalinx"]["password"] not in text
    assert not [token for token in sb.datalinx.tokens if token in text]
    assert "pw-" not in json.dumps(out.records["datalinx_sources"])


@pytest.mark.untimed
def test_key_without_admin_rights_workspaces_complete_org_streams_skipped_with_a_warning(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    config = datalinx_config(sandbox, api_key=VIEWER_API_KEY, max_requests_per_second=100)
    out = run_sync(make_tap(config))  # finishes: no partition failed
    assert_complete(sandbox, out, ("workspaces", *SCOPED))
    for stream in ORGANIZATION:
        assert out.records[f"datalinx_{stream}"] == []
    warnings = [r.getMessage() for r in caplog.records if "org.admin" in r.getMessage()]
    assert len(warnings) == 1
    assert "Permission 'org.admin' required (PERMISSION_DENIED)" in warnings[0]
    denied = [e for e in sandbox.request_log(platform="datalinx") if e["status"] == 403]
    assert sorted(e["path"] for e in denied) == ["/roles", "/service-accounts", "/users"]


def test_tight_window_and_burst_are_never_exceeded(sandbox: Sandbox) -> None:
    # 20 requests per 4 s window; a burst of 50 refilled at 5/s (300 a minute).
    sandbox.set_limit("datalinx", 20, 4.0)
    sandbox.datalinx.burst = (50, 5.0)
    workspaces = ["staging", "marketing analytics"]
    config = datalinx_config(sandbox, workspaces=workspaces, max_requests_per_second=5)
    with cpu_burner():  # as requests arrive on a busy machine
        out = run_sync(make_tap(config))
    log = sandbox.request_log(platform="datalinx")
    assert [e for e in log if e["status"] == 429] == []
    assert len(log) > 25  # more than one window's worth
    for stream in SCOPED:
        wanted = {key for key in sandbox.datalinx.keys(stream) if key[0] in workspaces}
        assert set(keys(out, stream)) == wanted, stream


def test_burst_exceeded_by_a_greedy_budget_is_waited_out(sandbox: Sandbox) -> None:
    # The tap believes it may send 100/s; the plan allows a burst of 5 at 10/s. The 429s
    # say Remaining 0 and when to come back; every record still arrives.
    sandbox.datalinx.burst = (5, 10.0)
    config = datalinx_config(sandbox, workspaces=["staging"], max_requests_per_second=100)
    out = run_sync(make_tap(config))
    log = sandbox.request_log(platform="datalinx")
    rejected = [e for e in log if e["status"] == 429]
    assert rejected
    assert all(e["headers_sent"]["X-RateLimit-Remaining"] == "0" for e in rejected)
    wanted = {key for key in sandbox.datalinx.keys("sources") if key[0] == "staging"}
    assert set(keys(out, "sources")) == wanted


@pytest.mark.untimed
def test_second_run_emits_only_what_is_new_or_changed(sandbox: Sandbox) -> None:
    config = datalinx_config(sandbox, max_requests_per_second=100)
    first = run_sync(make_tap(config))
    assert_complete(sandbox, first, INCREMENTAL)
    before = {stream: set(keys(first, stream)) for stream in INCREMENTAL}
    sandbox.datalinx.advance(new=1, changed=1)
    second = run_sync(make_tap(config, state=first.states[-1]))
    workspaces = len(sandbox.datalinx.workspaces)
    for stream in filter(sandbox.datalinx.serves, INCREMENTAL):
        got = set(keys(second, stream))
        new = sandbox.datalinx.keys(stream) - before[stream]
        assert len(new) == workspaces, stream
        changed = {
            (ws, record_key(stream, records[0]))
            for ws, resources in sandbox.datalinx.scoped.items()
            if (records := resources[stream])
        }
        assert new | changed <= got, stream
        # Besides those, at most the record sitting on each workspace's bookmark.
        assert len(got - new - changed) <= workspaces, stream
        assert len(got) < len(sandbox.datalinx.keys(stream)), stream
    # Full-table streams deliver everything again, new runs included.
    assert_complete(sandbox, second, ("pipeline_runs", *ORGANIZATION))


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"password": "not-the-password"}, "Invalid email or password (INVALID_CREDENTIALS)"),
        ({"api_key": "dlx-wrong-key"}, "Invalid or missing credentials (UNAUTHORIZED)"),
    ],
)
@pytest.mark.untimed
def test_bad_credentials_fail_before_any_record(
    sandbox: Sandbox, block: dict[str, str], message: str
) -> None:
    login = "password" in block
    config = datalinx_config(sandbox, login=login, **block)
    with pytest.raises(PlatformAuthError) as failure:
        run_sync(make_tap(config))
    assert str(failure.value).startswith("Datalinx: HTTP 401")
    assert message in str(failure.value)
    assert block.get("password", block.get("api_key", "")) not in str(failure.value)
    # One request (the public API description read at discovery aside).
    log = sandbox.request_log(platform="datalinx")
    assert len([entry for entry in log if entry["path"] != "/openapi.json"]) == 1


def raw_sync(config: dict[str, Any], state: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    buffer = io.StringIO()
    tap = make_tap(config, state=state) if state is not None else make_tap(config)
    with contextlib.redirect_stdout(buffer):
        tap.preflight()
        tap.sync_all()
    tap.finish()
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


@pytest.mark.untimed
def test_interrupted_run_resumes_from_its_last_state(sandbox: Sandbox) -> None:
    config = datalinx_config(sandbox, max_requests_per_second=100)
    messages = raw_sync(config)
    records = [i for i, m in enumerate(messages) if m["type"] == "RECORD"]
    cut = records[len(records) // 2]  # killed half-way through
    state = [m["value"] for m in messages[:cut] if m["type"] == "STATE"][-1]
    partitions = state["bookmarks"]["datalinx_sources"]["partitions"]
    names = {ws["id"]: ws["name"] for ws in sandbox.datalinx.workspaces}
    done = {names[p["context"]["workspace_id"]] for p in partitions if "replication_key_value" in p}
    assert done  # some workspaces finished before the cut, some did not
    assert done != {ws["name"] for ws in sandbox.datalinx.workspaces}
    resumed = raw_sync(config, state=copy.deepcopy(state))
    delivered: dict[str, set[Any]] = {}
    for message in [*messages[:cut], *resumed]:
        if message["type"] == "RECORD":
            record, stream = message["record"], message["stream"].removeprefix("datalinx_")
            key = (record["workspace"], record["id"]) if stream in SCOPED else record["id"]
            delivered.setdefault(stream, set()).add(key)
    for stream in ("workspaces", *SCOPED, *ORGANIZATION):
        assert delivered.get(stream, set()) == sandbox.datalinx.keys(stream), stream
    # Workspaces whose increment finished before the cut are not read in full again.
    again = [
        m["record"] for m in resumed if m["type"] == "RECORD" and m["stream"] == "datalinx_sources"
    ]
    for workspace in done:
        wanted = [k for k in sandbox.datalinx.keys("sources") if k[0] == workspace]
        assert len([r for r in again if r["workspace"] == workspace]) < len(wanted)


@pytest.mark.untimed
def test_partitions_split_workspaces_and_read_the_organization_once(sandbox: Sandbox) -> None:
    config = datalinx_config(sandbox, max_requests_per_second=100)
    outs = [run_sync(make_tap({**config, "partition": {"index": i, "count": 2}})) for i in range(2)]
    for stream in ("workspaces", *SCOPED, *ORGANIZATION):
        parts = [set(keys(out, stream)) for out in outs]
        assert not parts[0] & parts[1], stream
        assert parts[0] | parts[1] == sandbox.datalinx.keys(stream), stream
    assert all(out.records["datalinx_workspaces"] for out in outs)  # both have work
    assert outs[1].records["datalinx_users"] == []


@pytest.mark.untimed
def test_a_renamed_workspace_keeps_its_partition(sandbox: Sandbox) -> None:
    """Partitions hash the workspace id: renaming a workspace (to a name that would hash
    elsewhere) moves neither it nor its workspace-scoped records to another process."""
    count = 2
    workspace = sandbox.datalinx.workspaces[0]
    old = str(workspace["name"])
    new = next(
        name
        for name in (f"{old}-{n}" for n in itertools.count())
        if partition_of(name, count) != partition_of(old, count)
    )
    config = datalinx_config(sandbox, max_requests_per_second=100)

    def owners() -> dict[int, set[Any]]:
        found: dict[int, set[Any]] = {}
        for index in range(count):
            tap = make_tap({**config, "partition": {"index": index, "count": count}})
            for stream in tap.streams.values():
                stream.selected = stream.name in ("datalinx_workspaces", "datalinx_queries")
            out = run_sync(tap)
            found[index] = {r["id"] for r in out.records["datalinx_workspaces"]} | {
                r["workspace"] for r in out.records["datalinx_queries"]
            }
        return found

    before = owners()
    sandbox.datalinx.rename_workspace(old, new)
    after = owners()
    home = partition_of(str(workspace["id"]), count)
    assert {workspace["id"], old} <= before[home]
    assert {workspace["id"], new} <= after[home]
    assert all(workspace["id"] not in after[i] for i in range(count) if i != home)
    # Every workspace, renamed or not, is read by exactly one process.
    assert set.union(*after.values()) >= sandbox.datalinx.keys("workspaces")
    assert not after[0] & after[1]


@pytest.mark.untimed
def test_a_renamed_workspace_keeps_its_bookmarks(sandbox: Sandbox) -> None:
    """Bookmarks are keyed by the workspace id: after a rename, the next run reads only
    what changed there, as in any other workspace, under the new name."""
    config = datalinx_config(sandbox, max_requests_per_second=100)
    first = run_sync(make_tap(config))
    workspace = sandbox.datalinx.workspaces[0]
    old = str(workspace["name"])
    sandbox.datalinx.rename_workspace(old, f"{old}-renamed")
    since = sandbox.datalinx.advance(new=1, changed=1)
    second = run_sync(make_tap(config, state=copy.deepcopy(first.states[-1])))
    for stream in INCREMENTAL:
        if not sandbox.datalinx.serves(stream):
            continue
        records = second.records[f"datalinx_{stream}"]
        renamed = [r for r in records if r["workspace"] == f"{old}-renamed"]
        # One new and one changed record (plus the one sitting on the inclusive bookmark),
        # not the whole workspace again.
        assert 2 <= len(renamed) <= 3, (stream, len(renamed))
        assert len([r for r in renamed if r["updated_at"] >= since.isoformat()]) == 2, stream
    partitions = second.states[-1]["bookmarks"]["datalinx_sources"]["partitions"]
    assert {p["context"]["workspace_id"] for p in partitions} == {
        ws["id"] for ws in sandbox.datalinx.workspaces
    }


def test_a_429_waits_until_the_reset_in_epoch_seconds(sandbox: Sandbox) -> None:
    # No Retry-After (undocumented): Remaining 0 and X-RateLimit-Reset in epoch seconds.
    sandbox.force("datalinx", status=429, count=1, delay=2, path_contains="/queries")
    config = datalinx_config(sandbox, workspaces=["staging"], max_requests_per_second=100)
    out = run_sync(make_tap(config))
    log = sandbox.request_log(platform="datalinx")
    index = next(i for i, e in enumerate(log) if e["status"] == 429)
    rejected, retried = log[index], log[index + 1]
    assert "Retry-After" not in rejected["headers_sent"]
    asked = float(rejected["headers_sent"]["X-RateLimit-Reset"]) - rejected["time"]
    waited = retried["time"] - rejected["time"]
    assert asked > 1.0
    assert asked <= waited <= asked * 1.1 + 0.1, (asked, waited)
    assert retried["path"] == "/queries"
    wanted = {key for key in sandbox.datalinx.keys("queries") if key[0] == "staging"}
    assert set(keys(out, "queries")) == wanted


@pytest.mark.untimed
def test_route_the_instance_lacks_is_one_warning_and_the_stream_skipped(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    assert sandbox.datalinx.missing_routes == {"alerts"}  # the default instance
    # Without an OpenAPI document to say so at discovery, the 404 tells (with one, the
    # stream is not offered at all: test_datalinx_openapi).
    sandbox.datalinx.openapi_served = False
    caplog.set_level(logging.WARNING)
    out = run_sync(make_tap(datalinx_config(sandbox, max_requests_per_second=500)))  # no failure
    assert "datalinx_alerts" not in out.records
    assert_complete(sandbox, out, tuple(s for s in SCOPED if s != "alerts") + ORGANIZATION)
    warnings = [r.getMessage() for r in caplog.records if "no route for" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "datalinx_alerts" in warnings[0]
    # Every workspace was asked once, then no more: the route is gone for all of them.
    asked = [e for e in sandbox.request_log("datalinx") if e["path"] == "/alerts"]
    assert len(asked) == 1


@pytest.mark.untimed
def test_without_a_pipelines_route_pipeline_runs_are_skipped_too(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """Runs are listed per pipeline: an instance without ``/pipelines`` has none to list,
    and says so once, for the pipelines, without a failure."""
    sandbox.datalinx.missing_routes = {"pipelines"}
    sandbox.datalinx.openapi_served = False
    caplog.set_level(logging.WARNING)
    out = run_sync(make_tap(datalinx_config(sandbox, max_requests_per_second=500)))  # no failure
    assert "datalinx_pipelines" not in out.records
    assert "datalinx_pipeline_runs" not in out.records
    warnings = [r.getMessage() for r in caplog.records if "no route for" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "datalinx_pipelines" in warnings[0]
    asked = [e for e in sandbox.request_log("datalinx") if e["path"] == "/pipelines"]
    assert len(asked) == 1
