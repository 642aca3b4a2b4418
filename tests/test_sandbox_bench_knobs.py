"""The sandbox's benchmark knobs: bulk data per platform and added latency per request."""

from __future__ import annotations

import hashlib
import time
from urllib.parse import quote

import requests

from dataplatforms_sandbox import CREDENTIALS, Sandbox
from dataplatforms_sandbox.reinfer import _DATA_MAPS
from dataplatforms_sandbox.server import _parse_bulk, main
from dataplatforms_sandbox.shapes import with_unknown_fields
from tests.helpers import make_tap, run_sync
from tests.sandbox_env import redivis_config

METADATA = ("redivis_datasets", "redivis_tables", "redivis_variables")

DEXI = CREDENTIALS["dexi"]
DEXI_HEADERS = {
    "X-DexiIO-Account": DEXI["account_id"],
    "X-DexiIO-Access": hashlib.md5(
        (DEXI["account_id"] + DEXI["api_key"]).encode(), usedforsecurity=False
    ).hexdigest(),
}


def test_bulk_dexi_run_serves_its_rows_in_executions_of_the_given_size() -> None:
    # A plain client reads the bulk results: no passing HTML or empty answers to retry.
    with Sandbox(bulk={"dexi": (2500, 1000)}, glitches=False) as sb:
        info = sb.bulk["dexi"]
        assert [e["rows"] for e in info["executions"]] == [1000, 1000, 500]
        base = sb.base_url("dexi")
        listed = requests.get(
            f"{base}/runs/{info['run_id']}/executions",
            params={"limit": 200},
            headers=DEXI_HEADERS,
            timeout=10,
        ).json()
        assert {e["_id"] for e in listed["rows"]} == {e["id"] for e in info["executions"]}
        assert all(e["state"] == "OK" and e["finished"] for e in listed["rows"])
        total, kinds = 0, set()
        for execution in listed["rows"]:
            body = requests.get(
                f"{base}/executions/{execution['_id']}/result",
                params={"format": "json"},
                headers=DEXI_HEADERS,
                timeout=10,
            ).json()
            assert body["headers"][-1] == "error"
            assert body["totalRows"] == len(body["rows"])
            total += len(body["rows"])
            kinds |= {type(row[2]).__name__ for row in body["rows"]}
        assert total == 2500
        # prices are mixed: floats, integers and nulls on failed lines
        assert {"float", "int", "NoneType"} <= kinds
        # a FILE: cell of a bulk row can be downloaded, with the size the cell announces
        cell = next(row[5] for row in body["rows"] if row[5])
        _, size, file_id = cell.split(";", 2)
        download = requests.get(
            f"{base}/executions/{execution['_id']}/file/{file_id}",
            headers=DEXI_HEADERS,
            timeout=10,
        )
        assert download.status_code == 200
        assert len(download.content) == int(size)


def test_bulk_reinfer_sources_split_the_comments_and_stay_in_the_past() -> None:
    with Sandbox(bulk={"reinfer": (1000, 300)}) as sb:
        info = sb.bulk["reinfer"]
        assert [s["comments"] for s in info["sources"]] == [300, 300, 300, 100]
        assert info["sources"][0]["source"] == "acme-support/bulk-1"
        newest = max(
            c.timestamp
            for s in sb.reinfer.sources.values()
            if s.name.startswith("bulk-")
            for c in s.comments
        )
        assert newest.timestamp() < time.time()


def test_bulk_redivis_resizes_a_table_with_every_type() -> None:
    with Sandbox(bulk={"redivis": (12345, None)}) as sb:
        info = sb.bulk["redivis"]
        assert info["rows"] == 12345
        health = requests.get(f"{sb.url}/_sandbox/health", timeout=10).json()
        assert health["bulk"]["redivis"]["table"] == info["table"]


def test_bulk_redivis_metadata_is_what_a_sync_of_the_organization_lists() -> None:
    with Sandbox(bulk={"redivis": (1000, 12)}, limits={"redivis": (100_000, 60.0)}) as sb:
        info = sb.bulk["redivis"]["metadata"]
        assert info["datasets"] >= 12
        config = redivis_config(sb, organizations=[info["owner"]], max_requests_per_second=500)
        del config["redivis"]["users"]
        tap = make_tap(config)
        for stream in tap.streams.values():
            stream.selected = stream.name in METADATA
        records = run_sync(tap).records
        assert len(records["redivis_datasets"]) == info["datasets"]
        assert len(records["redivis_tables"]) == info["tables"]
        assert len(records["redivis_variables"]) == info["variables"]
        names = {r["name"] for r in records["redivis_datasets"]}
        assert {f"bulk_metadata_{i}" for i in range(1, 13)} <= names


def test_latency_is_added_to_platform_requests_only() -> None:
    with Sandbox(latency_ms=150) as sb:
        started = time.perf_counter()
        requests.get(f"{sb.url}/_sandbox/health", timeout=10)
        control = time.perf_counter() - started
        started = time.perf_counter()
        requests.get(f"{sb.base_url('dexi')}/runs", headers=DEXI_HEADERS, timeout=10)
        platform = time.perf_counter() - started
        assert platform >= 0.15
        assert control < 0.15


def test_bulk_argument_forms() -> None:
    assert _parse_bulk("dexi=1000000/50000") == ("dexi", (1_000_000, 50_000))
    assert _parse_bulk("redivis=10") == ("redivis", (10, None))
    assert main(["--bulk", "invision=10", "--port", "0"]) == 2


def test_bulk_comments_are_served_as_seeded_ones_are() -> None:
    with Sandbox(bulk={"reinfer": (600, 600)}) as sb:
        url = sb.base_url("reinfer") + "/api/_private/sources/acme-support/bulk-1/comments"
        headers = {"Authorization": f"Bearer {CREDENTIALS['reinfer']['token']}"}
        page = requests.get(url, params={"limit": 256}, headers=headers, timeout=10).json()
        source = next(s for s in sb.reinfer.sources.values() if s.name == "bulk-1")
        assert page["status"] == "ok"
        # served as every comment is: with the fields no client declares
        expected = [with_unknown_fields(c.to_json(), skip=_DATA_MAPS) for c in source.comments]
        assert page["comments"] == expected[:256]
        last = requests.get(
            url,
            params={"limit": 256, "after": page["continuation"]},
            headers=headers,
            timeout=10,
        ).json()
        assert [c["id"] for c in last["comments"]] == [c.id for c in source.comments[256:512]]


def _read_stream_seconds(sb: Sandbox) -> tuple[int, float]:
    """Bytes and seconds of one Redivis read stream of the bulk table."""
    base = sb.base_url("redivis")
    headers = {"Authorization": f"Bearer {CREDENTIALS['redivis']['token']}"}
    table = quote(sb.bulk["redivis"]["table"], safe="")
    session = requests.post(
        f"{base}/tables/{table}/readSessions",
        json={"format": "arrow", "requestedStreamCount": 1},
        headers=headers,
        timeout=10,
    ).json()
    started = time.perf_counter()
    body = requests.get(
        f"{base}/readStreams/{session['streams'][0]['id']}", headers=headers, timeout=30
    ).content
    return len(body), time.perf_counter() - started


def test_link_cap_paces_streamed_bodies_per_connection() -> None:
    with Sandbox(bulk={"redivis": (20_000, None)}) as sb:
        size, uncapped = _read_stream_seconds(sb)
        # 8 Mbit/s is a megabyte a second: the body takes at least its size in megabytes.
        sb.link_bytes_per_second = 1_000_000
        capped_size, capped = _read_stream_seconds(sb)
    assert capped_size == size > 500_000
    assert capped >= size / 1_000_000 * 0.95
    assert uncapped < capped / 2
