"""The sandbox's injected faults: each kind as documented, per platform, without side effects."""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests

from dataplatforms_sandbox import CREDENTIALS, Sandbox
from dataplatforms_sandbox.faults import FAULT_KINDS, FaultInjector, FaultPlan
from tests.reliability import new_sandbox

DEXI = CREDENTIALS["dexi"]
HEADERS = {
    "dexi": {
        "X-DexiIO-Account": DEXI["account_id"],
        "X-DexiIO-Access": hashlib.md5(
            (DEXI["account_id"] + DEXI["api_key"]).encode(), usedforsecurity=False
        ).hexdigest(),
    },
    "reinfer": {"Authorization": f"Bearer {CREDENTIALS['reinfer']['token']}"},
    "redivis": {"Authorization": f"Bearer {CREDENTIALS['redivis']['token']}"},
    "invision": {"x-api-key": CREDENTIALS["invision"]["api_key"]},
    "datalinx": {"X-API-Key": CREDENTIALS["datalinx"]["api_key"]},
}
# One harmless read per platform.
READS = {
    "dexi": "/runs",
    "reinfer": "/api/v1/datasets",
    "redivis": "/users/jdoe/datasets",
    "invision": "/api/pub/v1/db/tables/GL_Actuals/data",
    "datalinx": "/workspaces",
}


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    sb = new_sandbox(seed=4)
    yield sb
    sb.stop()


def get(sb: Sandbox, platform: str, path: str | None = None, **kw: Any) -> requests.Response:
    url = sb.base_url(platform) + (path or READS[platform])
    headers = {**HEADERS[platform], **kw.pop("headers", {})}
    return requests.get(url, headers=headers, timeout=kw.pop("timeout", 10), **kw)


@pytest.mark.parametrize(
    ("platform", "hint"),
    [
        ("dexi", set()),  # no rate-limit header is documented
        ("reinfer", set()),
        ("redivis", {"retry-after"}),  # an instant in epoch milliseconds
        ("datalinx", {"x-ratelimit-remaining", "x-ratelimit-reset"}),
    ],
)
def test_an_injected_429_carries_the_platforms_own_hint(
    sandbox: Sandbox, platform: str, hint: set[str]
) -> None:
    sandbox.set_faults(1.0, kinds=["429"], wait_seconds=2)
    resp = get(sandbox, platform)
    assert resp.status_code == 429
    sent = {k.lower() for k in resp.headers}
    assert hint <= sent
    assert ("retry-after" in sent) == ("retry-after" in hint)
    if platform == "redivis":
        wait = int(resp.headers["Retry-After"]) / 1000 - time.time()
        assert 0 < wait <= 2.5
    if platform == "datalinx":
        assert resp.headers["X-RateLimit-Remaining"] == "0"
    assert sandbox.fault_counts() == {platform: {"429": 1}}


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_in_the_platforms_error_body(sandbox: Sandbox, status: int) -> None:
    sandbox.set_faults(1.0, kinds=[str(status)])
    for platform in ("dexi", "reinfer", "redivis", "datalinx"):
        resp = get(sandbox, platform)
        assert resp.status_code == status, platform
        assert isinstance(resp.json(), dict)
    assert set(sandbox.fault_counts()) == {"dexi", "reinfer", "redivis", "datalinx"}


def test_invision_fails_only_with_500(sandbox: Sandbox) -> None:
    sandbox.set_faults(1.0, kinds=["429", "502", "503", "504"])
    assert get(sandbox, "invision").status_code == 200  # none of these applies
    sandbox.set_faults(1.0, kinds=["500"])
    resp = get(sandbox, "invision")
    assert resp.status_code == 500
    assert sandbox.fault_counts() == {"invision": {"500": 1}}


def test_a_dropped_connection_answers_nothing(sandbox: Sandbox) -> None:
    sandbox.set_faults(1.0, kinds=["drop"])
    with pytest.raises(requests.exceptions.ConnectionError):
        get(sandbox, "reinfer")
    (entry,) = sandbox.request_log("reinfer")
    assert entry["status"] is None
    assert entry["fault"] == "drop"


def test_a_truncated_body_is_status_200_and_broken_json(sandbox: Sandbox) -> None:
    whole = get(sandbox, "datalinx").content
    sandbox.set_faults(1.0, kinds=["truncated"])
    resp = get(sandbox, "datalinx")
    assert resp.status_code == 200
    assert resp.content == whole[: len(whole) // 2]
    with pytest.raises(ValueError):  # noqa: PT011 - json's error is a ValueError
        resp.json()


def test_a_cut_answer_breaks_off_mid_body(sandbox: Sandbox) -> None:
    whole = get(sandbox, "reinfer").content
    sandbox.set_faults(1.0, kinds=["cut"])
    resp = get(sandbox, "reinfer", stream=True)
    assert resp.status_code == 200
    received = bytearray()

    def read_all() -> None:
        for chunk in resp.iter_content(1024):
            received.extend(chunk)

    with pytest.raises(requests.exceptions.ChunkedEncodingError):  # the connection goes ...
        read_all()
    assert bytes(received) == whole[: len(whole) // 2]  # ... after the first half
    assert sandbox.fault_counts() == {"reinfer": {"cut": 1}}


def test_a_slow_answer_outlasts_the_read_timeout(sandbox: Sandbox) -> None:
    sandbox.set_faults(1.0, kinds=["slow"], slow_seconds=0.6)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        get(sandbox, "redivis", timeout=(5, 0.2))
    assert time.monotonic() - started < 0.5
    assert sandbox.fault_counts() == {"redivis": {"slow": 1}}


def test_only_a_datalinx_jwt_that_worked_can_expire(sandbox: Sandbox) -> None:
    creds = CREDENTIALS["datalinx"]
    base = sandbox.base_url("datalinx")
    login = {"email": creds["email"], "password": creds["password"]}
    token = requests.post(base + "/auth/login", json=login, timeout=10).json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    sandbox.set_faults(1.0, kinds=["expired"])
    # A fresh token is not expired on its first use; an API key never expires.
    first = requests.get(base + "/workspaces", headers=bearer, timeout=10)
    assert first.status_code == 200
    assert get(sandbox, "datalinx").status_code == 200
    second = requests.get(base + "/workspaces", headers=bearer, timeout=10)
    assert second.status_code == 401
    assert second.json()["error_code"] == "TOKEN_EXPIRED"
    # ... and it stays expired, as a real expiry would.
    sandbox.set_faults(0.0)
    assert requests.get(base + "/workspaces", headers=bearer, timeout=10).status_code == 401
    sandbox.set_faults(1.0, kinds=["expired"])
    for platform in ("dexi", "reinfer", "redivis", "invision"):
        assert get(sandbox, platform).status_code == 200, platform


def test_a_faulted_write_has_no_side_effect(sandbox: Sandbox) -> None:
    """Every kind that may pick a write is answered before the handler runs."""
    sandbox.set_faults(1.0, kinds=FAULT_KINDS)
    run_id = sandbox.dexi.runs[0].id
    flow = sandbox.invision.succeeding[0]
    table = next(
        t
        for ds in sandbox.redivis.datasets_by_owner["demo"]
        if ds.may("data")
        for t in ds.current_tables
    )
    writes = [
        ("dexi", f"/runs/{run_id}/execute", None),
        ("invision", f"/api/pub/v1/dataflows/{flow.id}/start", {}),
        ("redivis", f"/tables/{quote(table.qualified_reference, safe='')}/readSessions", {}),
    ]
    for _ in range(12):
        for platform, path, body in writes:
            url = sandbox.base_url(platform) + path
            try:
                resp = requests.post(url, headers=HEADERS[platform], json=body, timeout=10)
            except requests.exceptions.ConnectionError:
                continue  # dropped
            assert resp.status_code >= 400, (platform, resp.status_code)
    assert sandbox.dexi.started == []
    assert sandbox.invision.runs == {}
    assert sandbox.platform("redivis").read_sessions.sessions == {}  # type: ignore[attr-defined]
    kinds = {k for counts in sandbox.fault_counts().values() for k in counts}
    assert kinds.isdisjoint({"truncated", "cut", "slow"})
    # The same writes without faults do what they say (the answer the sandbox loses by
    # default to the first start of a run or flow left aside: tested with the tap).
    sandbox.set_faults(0.0)
    sandbox.dexi.lose_start_answers = False
    sandbox.invision.lose_start_answers = False
    for platform, path, body in writes:
        url = sandbox.base_url(platform) + path
        assert requests.post(url, headers=HEADERS[platform], json=body, timeout=10).ok
    assert len(sandbox.dexi.started) == 1
    assert len(sandbox.invision.runs) == 1


def test_dexi_dataset_rows_are_a_read_that_may_be_truncated(sandbox: Sandbox) -> None:
    dataset = sorted(sandbox.dexi.datasets)[0]
    sandbox.set_faults(1.0, kinds=["truncated"])
    url = sandbox.base_url("dexi") + f"/datasets/{dataset}/rows"
    resp = requests.post(url, headers=HEADERS["dexi"], json={"offset": 0, "limit": 5}, timeout=10)
    assert resp.status_code == 200
    assert sandbox.fault_counts() == {"dexi": {"truncated": 1}}


def test_the_share_of_faults_follows_the_rate_and_the_seed() -> None:
    def kinds(seed: int) -> list[str | None]:
        injector = FaultInjector(FaultPlan(rate=0.1, seed=seed))
        return [injector.draw("dexi", list(FAULT_KINDS)) for _ in range(5000)]

    first = kinds(7)
    assert first == kinds(7)
    assert first != kinds(8)
    share = sum(k is not None for k in first) / len(first)
    assert 0.08 < share < 0.12
    assert {k for k in first if k} == set(FAULT_KINDS)


SANDBOX_ARGS = ("--port", "0", "--faults", "1", "--fault-seed", "5")


def test_control_endpoint_and_command_line() -> None:
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "tap-dataplatforms-sandbox"), *SANDBOX_ARGS],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[-1]
        status = requests.get(url + "/_sandbox/faults", timeout=10).json()
        assert (status["rate"], status["seed"], status["counts"]) == (1.0, 5, {})
        with contextlib.suppress(requests.exceptions.ConnectionError):  # a drop
            requests.get(url + "/reinfer" + READS["reinfer"], timeout=10)
        counts = requests.get(url + "/_sandbox/faults", timeout=10).json()["counts"]
        assert sum(counts["reinfer"].values()) == 1
        off = requests.post(url + "/_sandbox/faults", data=json.dumps({"rate": 0}), timeout=10)
        assert off.ok
        assert requests.get(url + "/reinfer" + READS["reinfer"], timeout=10).status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=10)
