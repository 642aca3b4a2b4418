"""The sandbox's Redivis emulator and the sandbox framework (limits, faults, log, CLI)."""

from __future__ import annotations

import email.utils
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
import requests

from dataplatforms_sandbox import CREDENTIALS, Sandbox

TOKEN = CREDENTIALS["redivis"]["token"]
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ALL_TYPES = {"boolean", "integer", "float", "string", "date", "dateTime", "time", "geography"}


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    # A plain client reads the emulator here: no passing HTML or empty answers to retry.
    sandbox = Sandbox(seed=1, scale=1, glitches=False).start(host="127.0.0.1", port=0)
    yield sandbox
    sandbox.stop()


@pytest.fixture(autouse=True)
def _reset(sb: Sandbox) -> Iterator[None]:
    sb.set_limit("redivis", 1000, 60.0)
    sb.clear_forced()
    sb.clear_log()
    yield
    sb.set_limit("redivis", 1000, 60.0)
    sb.clear_forced()


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def enc(reference: str) -> str:
    """One fully percent-encoded path segment, as the official Python client sends it."""
    return quote(reference, safe="")


def get(
    http: requests.Session, sb: Sandbox, path: str, headers: dict[str, str] | None = None, **params
) -> requests.Response:
    return http.get(
        sb.base_url("redivis") + path,
        headers=AUTH if headers is None else headers,
        params=params,
        timeout=10,
    )


def wait_instant(resp: requests.Response, received: float) -> float | None:
    """Normalise every documented wait-hint form to an absolute epoch instant."""
    value = resp.headers.get("Retry-After")
    if value is None:
        if resp.headers.get("X-RateLimit-Remaining") == "0" and "X-RateLimit-Reset" in resp.headers:
            value = resp.headers["X-RateLimit-Reset"]
        else:
            return None
    if value.strip().isdigit():
        number = int(value)
        if number > 10**12:
            return number / 1000
        if number > 10**9:
            return float(number)
        return received + number
    parsed = email.utils.parsedate_to_datetime(value)
    return parsed.timestamp()


# --------------------------------------------------------------------------- auth, errors


def test_missing_and_bad_token_get_the_documented_401_body(sb: Sandbox, http) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": TOKEN}):
        resp = get(http, sb, "/users/jdoe/datasets", headers=headers)
        assert resp.status_code == 401
        error = resp.json()["error"]
        assert error["status"] == 401
        assert isinstance(error["message"], str)
        assert error["message"]
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        # rate-limit headers are on every response, errors included
        assert "X-RateLimit-Remaining" in resp.headers
        assert "Date" in resp.headers
    assert get(http, sb, "/users/jdoe/datasets").status_code == 200


def test_not_found_also_hides_what_the_token_may_not_see(sb: Sandbox, http) -> None:
    hidden = sb.redivis.hidden_datasets[0]
    resp = get(http, sb, f"/datasets/{enc(hidden.qualified_reference)}")
    assert resp.status_code == 404
    error = resp.json()["error"]
    assert error["message"] == "Dataset not found"
    assert error["status"] == 404
    assert set(error) <= {"message", "status", "description"}
    assert get(http, sb, f"/datasets/{enc('demo.no_such_dataset')}").status_code == 404
    assert get(http, sb, "/organizations/jdoe/datasets").status_code == 404  # jdoe is a user
    assert get(http, sb, "/users/demo/datasets").status_code == 404  # demo is an organization
    assert get(http, sb, "/no/such/route").status_code == 404
    # the hidden dataset never appears in its owner's listing
    ids = [d["id"] for d in get(http, sb, "/organizations/demo/datasets").json()["results"]]
    assert hidden.id not in ids


def test_overview_access_gives_oauth_style_insufficient_scope(sb: Sandbox, http) -> None:
    [ds] = [d for d in sb.redivis.datasets_by_owner["demo"] if d.access_level == "overview"]
    assert get(http, sb, f"/datasets/{enc(ds.qualified_reference)}").status_code == 200
    resp = get(http, sb, f"/datasets/{enc(ds.qualified_reference)}/tables")
    assert resp.status_code == 403
    body = resp.json()
    assert body["error"] == "insufficient_scope"
    assert body["error_description"]
    table = sb.redivis.tables_by_dataset[ds.id][0]
    resp = get(http, sb, f"/tables/{enc(table.qualified_reference)}/variables")
    assert resp.status_code == 403
    assert resp.json()["error"] == "insufficient_scope"


def test_head_errors_travel_in_a_header(sb: Sandbox, http) -> None:
    resp = http.head(sb.base_url("redivis") + "/datasets/demo.nothing_here", headers=AUTH)
    assert resp.status_code == 404
    assert resp.content == b""
    payload = json.loads(unquote(resp.headers["X-Redivis-Error-Payload"]))
    assert payload["error"]["status"] == 404


# --------------------------------------------------------------------------- lists, pagination


def test_census_archive_takes_two_pages_and_yields_every_id_once(sb: Sandbox, http) -> None:
    first = get(http, sb, "/organizations/census_archive/datasets").json()
    assert first["kind"] == "datasetList"
    assert len(first["results"]) == 100
    assert isinstance(first["nextPageToken"], str)
    assert first["nextPageToken"]
    second = get(
        http, sb, "/organizations/census_archive/datasets", pageToken=first["nextPageToken"]
    ).json()
    assert len(second["results"]) == 50
    assert second["nextPageToken"] is None
    ids = [d["id"] for d in first["results"] + second["results"]]
    expected = [d.id for d in sb.redivis.datasets_by_owner["census_archive"]]
    assert ids == expected
    assert len(set(ids)) == 150
    # only the first three datasets hold tables
    counts = [d["tableCount"] for d in first["results"] + second["results"]]
    assert all(c > 0 for c in counts[:3])
    assert not any(counts[3:])


def test_page_size_limits_and_invalid_tokens(sb: Sandbox, http) -> None:
    path = "/organizations/census_archive/datasets"
    resp = get(http, sb, path, maxResults=1001)
    assert resp.status_code == 400
    assert resp.json()["error"]["status"] == 400
    assert get(http, sb, path, maxResults=0).status_code == 400
    assert get(http, sb, path, maxResults="ten").status_code == 400
    full = get(http, sb, path, maxResults=1000).json()
    assert len(full["results"]) == 150
    assert full["nextPageToken"] is None
    assert get(http, sb, path, pageToken="not-a-token").status_code == 400
    # a token is bound to its list
    token = get(http, sb, path, maxResults=10).json()["nextPageToken"]
    assert get(http, sb, "/organizations/demo/datasets", pageToken=token).status_code == 400
    # page sizes may change between pages; the token carries the position
    page = get(http, sb, path, maxResults=5, pageToken=token).json()
    assert [d["id"] for d in page["results"]] == [
        d.id for d in sb.redivis.datasets_by_owner["census_archive"][10:15]
    ]


def test_listings_match_the_model(sb: Sandbox, http) -> None:
    model = sb.redivis
    demo = get(http, sb, "/organizations/demo/datasets").json()["results"]
    assert len(demo) == 12
    assert len(get(http, sb, "/users/JDOE/datasets").json()["results"]) == 3
    names = {d.name for d in model.datasets_by_owner["demo"]} & {
        d.name for d in model.datasets_by_owner["jdoe"]
    }
    assert names, "some dataset names are shared across owners"
    seen_types: set[str] = set()
    for record in demo:
        assert isinstance(record["createdAt"], int)
        assert record["createdAt"] > 10**12
        owner = {k: v for k, v in record["owner"].items() if not k.startswith("x_feature_")}
        assert owner == {"kind": "organization", "name": "demo"}  # and undeclared fields
        ds = model.dataset(record["qualifiedReference"])
        assert record["tableCount"] == len(model.tables_by_dataset[ds.id])
        if ds.access_level == "overview":
            continue
        tables = get(http, sb, f"/datasets/{enc(record['qualifiedReference'])}/tables").json()
        assert tables["kind"] == "tableList"
        assert [t["referenceId"] for t in tables["results"]] == [
            t.reference_id for t in model.tables_by_dataset[ds.id]
        ]
        for table in tables["results"]:
            variables = get(
                http, sb, f"/tables/{enc(table['qualifiedReference'])}/variables", maxResults=1000
            ).json()["results"]
            assert table["variableCount"] == len(variables)
            assert [v["index"] for v in variables] == list(range(len(variables)))
            assert [v["name"] for v in variables] == [
                v.name for v in model.variables_by_table[table["qualifiedReference"]]
            ]
            seen_types |= {v["type"] for v in variables}
    assert seen_types == ALL_TYPES


def test_label_filter_on_organizations(sb: Sandbox, http) -> None:
    datasets = sb.redivis.datasets_by_owner["demo"]
    label = next(label for d in datasets for label in d.labels)
    results = get(http, sb, "/organizations/demo/datasets", labels=label).json()["results"]
    assert {r["id"] for r in results} == {d.id for d in datasets if label in d.labels}


# --------------------------------------------------------------------------- references


def test_every_reference_form_resolves_to_the_same_table(sb: Sandbox, http) -> None:
    ds = sb.redivis.datasets_by_owner["demo"][0]
    table = sb.redivis.tables_by_dataset[ds.id][0]
    tag = ds.current_version.tag
    owner, dname, tname = ds.owner.name, ds.name, table.name
    dref, tref = ds.reference_id, table.reference_id
    forms = [
        table.qualified_reference,
        f"{owner}.{dname}.{tname}",
        f"{owner}.{dname}:{dref}.{tname}:{tref}",
        f"{owner}.{dname}:{dref}:current.{tname}",
        f"{owner}.{dname}:{tag}.{tname}:{tref}",
        f"{owner.upper()}.{dname.upper()}:{dref.upper()}.{tname.upper()}",
    ]
    ids = set()
    for form in forms:
        resp = get(http, sb, f"/tables/{enc(form)}")
        assert resp.status_code == 200, form
        body = resp.json()
        assert body["qualifiedReference"] == table.qualified_reference
        ids.add(body["id"])
    assert len(ids) == 1
    # ":" sent unencoded is the same segment once decoded
    raw = sb.base_url("redivis") + "/tables/" + table.qualified_reference
    assert http.get(raw, headers=AUTH, timeout=10).json()["id"] in ids
    log = sb.request_log(platform="redivis")
    assert log[0]["raw_path"] == f"/tables/{enc(table.qualified_reference)}"
    assert log[0]["path"] == f"/tables/{table.qualified_reference}"


def test_versions_and_bad_references(sb: Sandbox, http) -> None:
    ds = next(d for d in sb.redivis.datasets_by_owner["demo"] if len(d.versions) > 1)
    first = ds.versions[0]
    resp = get(http, sb, f"/datasets/{enc(ds.qualified_reference + ':' + first.tag)}")
    assert resp.status_code == 200
    assert resp.json()["qualifiedReference"].endswith(f":{first.tag}")
    tables = get(http, sb, f"/datasets/{enc(ds.qualified_reference + ':' + first.tag)}/tables")
    assert {t["referenceId"] for t in tables.json()["results"]} == {
        t.reference_id for t in ds.tables_in(first)
    }
    assert all(
        t["qualifiedReference"].split(".")[1].endswith(f":{first.tag}")
        for t in tables.json()["results"]
    )
    assert get(http, sb, f"/datasets/{enc(ds.qualified_reference + ':v99_0')}").status_code == 404
    # unreleased versions are visible to editors only
    assert get(http, sb, f"/datasets/{enc(ds.qualified_reference + ':next')}").status_code == 404
    mine = next(d for d in sb.redivis.datasets_by_owner["jdoe"] if d.next_version is not None)
    nxt = get(http, sb, f"/datasets/{enc(mine.qualified_reference + ':next')}/tables").json()
    assert len(nxt["results"]) == len(mine.tables_in(mine.next_version))
    assert len(nxt["results"]) > len(mine.current_tables)
    versions = get(http, sb, f"/datasets/{enc(mine.qualified_reference)}/versions").json()
    assert versions["results"][0]["isReleased"] is False
    for bad in ("demo", "demo.a.b.c", "demo.x:toolongqualifier"):
        assert get(http, sb, f"/datasets/{enc(bad)}").status_code == 400, bad


def test_reference_id_wins_over_a_stale_name_with_a_warning(sb: Sandbox, http) -> None:
    ds = sb.redivis.datasets_by_owner["demo"][0]
    resp = get(http, sb, f"/datasets/{enc(f'demo.old_name:{ds.reference_id}')}")
    assert resp.status_code == 200
    assert resp.json()["id"] == ds.id
    assert "X-Redivis-Warning" in resp.headers
    strict = get(
        http, sb, f"/datasets/{enc(f'demo.old_name:{ds.reference_id}')}", strictReferences="true"
    )
    assert strict.status_code == 404


def test_deprecated_access_token_parameter_warns(sb: Sandbox, http) -> None:
    resp = get(http, sb, "/users/jdoe/datasets", headers={}, access_token=TOKEN)
    assert resp.status_code == 200
    assert "deprecated" in resp.headers["X-Redivis-Warning"]
    assert "X-Redivis-Warning" not in get(http, sb, "/users/jdoe/datasets").headers


# --------------------------------------------------------------------------- rate limits


def test_rate_limit_headers_count_down(sb: Sandbox, http) -> None:
    before = time.time()
    remaining = []
    for _ in range(3):
        resp = get(http, sb, "/users/jdoe/datasets")
        assert resp.headers["X-RateLimit-Limit"] == "1000"
        remaining.append(int(resp.headers["X-RateLimit-Remaining"]))
        reset_ms = int(resp.headers["X-RateLimit-Reset"])
        assert before + 59 <= reset_ms / 1000 <= time.time() + 61
    assert remaining == [999, 998, 997]


def test_exhausted_window_gives_429_with_epoch_ms_retry_after(sb: Sandbox, http) -> None:
    sb.set_limit("redivis", limit=3, window_seconds=2.0)
    statuses = [get(http, sb, "/users/jdoe/datasets").status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    sent = time.time()
    resp = get(http, sb, "/users/jdoe/datasets")
    assert resp.status_code == 429
    assert resp.json()["error"]["status"] == 429
    retry_after = int(resp.headers["Retry-After"])
    assert retry_after > 10**12  # epoch milliseconds, not seconds
    assert sent < retry_after / 1000 <= sent + 2.1
    assert resp.headers["X-RateLimit-Remaining"] == "0"
    assert resp.headers["X-RateLimit-Reset"] == resp.headers["Retry-After"]
    # the limit is per credential: another token still reaches the auth check
    other = get(http, sb, "/users/jdoe/datasets", headers={"Authorization": "Bearer other"})
    assert other.status_code == 401
    # rejected requests are logged as 429s
    statuses = [e["status"] for e in sb.request_log(platform="redivis")]
    assert statuses == [200, 200, 200, 429, 401]


def test_window_refills_after_reset(sb: Sandbox, http) -> None:
    sb.set_limit("redivis", limit=1, window_seconds=0.3)
    assert get(http, sb, "/users/jdoe/datasets").status_code == 200
    resp = get(http, sb, "/users/jdoe/datasets")
    assert resp.status_code == 429
    time.sleep(max(0.0, int(resp.headers["Retry-After"]) / 1000 - time.time()) + 0.02)
    assert get(http, sb, "/users/jdoe/datasets").status_code == 200


# --------------------------------------------------------------------------- forced faults


@pytest.mark.parametrize("form", ["seconds", "http-date", "epoch-s", "epoch-ms", "reset", "none"])
def test_forced_retry_after_forms_point_at_the_same_instant(sb: Sandbox, http, form) -> None:
    sb.force("redivis", status=429, count=1, retry_after_form=form, delay=5)
    sent = time.time()
    resp = get(http, sb, "/users/jdoe/datasets")
    received = time.time()
    assert resp.status_code == 429
    assert resp.json()["error"]["status"] == 429
    assert "Date" in resp.headers
    instant = wait_instant(resp, received)
    if form == "none":
        assert instant is None
        assert "Retry-After" not in resp.headers
        assert "X-RateLimit-Reset" not in resp.headers
    else:
        assert instant is not None
        assert sent + 5 - 1 <= instant <= received + 5 + 1
    if form == "reset":
        assert "Retry-After" not in resp.headers
        assert int(resp.headers["X-RateLimit-Reset"]) > 10**12
    if form == "http-date":
        assert resp.headers["Retry-After"].endswith(" GMT")
        assert instant is not None
        assert instant == int(instant)  # a whole second
    # the fault was used up; the next request is served normally
    assert get(http, sb, "/users/jdoe/datasets").status_code == 200


def test_forced_faults_respect_count_and_path_and_spare_the_budget(sb: Sandbox, http) -> None:
    sb.force("redivis", status=503, count=2, path_contains="/datasets/")
    listing = get(http, sb, "/users/jdoe/datasets")  # "/users/jdoe/datasets" has no "/datasets/"
    assert listing.status_code == 200
    remaining = int(listing.headers["X-RateLimit-Remaining"])
    ref = enc(sb.redivis.datasets_by_owner["jdoe"][0].qualified_reference)
    first = get(http, sb, f"/datasets/{ref}")
    second = get(http, sb, f"/datasets/{ref}")
    assert (first.status_code, second.status_code) == (503, 503)
    assert first.json()["error"]["status"] == 503
    assert first.headers["X-RateLimit-Remaining"] == str(remaining)  # not consumed
    third = get(http, sb, f"/datasets/{ref}")
    assert third.status_code == 200
    assert third.headers["X-RateLimit-Remaining"] == str(remaining - 1)
    forced = [e["forced"] for e in sb.request_log(platform="redivis")]
    assert forced == [False, True, True, False]


def test_forced_fault_does_not_disturb_pagination(sb: Sandbox, http) -> None:
    path = "/organizations/census_archive/datasets"
    token = get(http, sb, path).json()["nextPageToken"]
    sb.force("redivis", status=500, count=1)
    assert get(http, sb, path, pageToken=token).status_code == 500
    again = get(http, sb, path, pageToken=token).json()
    assert len(again["results"]) == 50


# --------------------------------------------------------------------------- log, control


def test_request_log_records_each_request(sb: Sandbox, http) -> None:
    before = time.time()
    get(http, sb, "/organizations/demo/datasets", maxResults=5)
    get(http, sb, "/users/jdoe/datasets", headers={})
    log = sb.request_log(platform="redivis")
    assert [e["status"] for e in log] == [200, 401]
    entry = log[0]
    assert entry["platform"] == "redivis"
    assert entry["method"] == "GET"
    assert entry["path"] == "/organizations/demo/datasets"
    assert entry["query"] == {"maxResults": "5"}
    assert before <= entry["time"] <= time.time()
    assert entry["headers_sent"]["X-RateLimit-Limit"] == "1000"
    assert "Content-Length" in entry["headers_sent"]
    assert entry["request_headers"]["authorization"] == "<redacted>"
    assert sb.request_log(platform="dexi") == []
    sb.clear_log()
    assert sb.request_log() == []


def test_http_control_endpoints(sb: Sandbox, http) -> None:
    health = http.get(sb.url + "/_sandbox/health", timeout=10).json()
    assert health["status"] == "ok"
    assert health["platforms"]["redivis"] == "/redivis/api/v1"
    forced = http.post(
        sb.url + "/_sandbox/force",
        json={"platform": "redivis", "status": 429, "retry_after_form": "seconds", "delay": 3},
        timeout=10,
    )
    assert forced.status_code == 200
    resp = get(http, sb, "/users/jdoe/datasets")
    assert (resp.status_code, resp.headers["Retry-After"]) == (429, "3")
    limits = {"platform": "redivis", "limit": 7, "window_seconds": 30}
    assert http.post(sb.url + "/_sandbox/limits", json=limits, timeout=10).ok
    assert get(http, sb, "/users/jdoe/datasets").headers["X-RateLimit-Limit"] == "7"
    logged = http.get(sb.url + "/_sandbox/requests", params={"platform": "redivis"}, timeout=10)
    assert [e["status"] for e in logged.json()["requests"]] == [429, 200]
    assert http.post(sb.url + "/_sandbox/clear-log", timeout=10).ok
    assert sb.request_log() == []
    bad = http.post(sb.url + "/_sandbox/force", json={"platform": "nope"}, timeout=10)
    assert bad.status_code == 400


def test_seeded_data_is_deterministic() -> None:
    one, two, other = Sandbox(seed=7), Sandbox(seed=7), Sandbox(seed=8)
    ids = [d.id for d in one.redivis.all_datasets]
    assert ids == [d.id for d in two.redivis.all_datasets]
    assert ids != [d.id for d in other.redivis.all_datasets]
    big = Sandbox(seed=7, scale=2).redivis
    assert len(big.datasets_by_owner["demo"]) == 24
    assert len(big.datasets_by_owner["census_archive"]) == 300
    assert len({d.qualified_reference for d in big.all_datasets}) == len(big.all_datasets)


# --------------------------------------------------------------------------- CLI


def test_cli_prints_its_address_and_stops_cleanly() -> None:
    script = Path(sys.executable).parent / "tap-dataplatforms-sandbox"
    proc = subprocess.Popen(
        [str(script), "--port", "0", "--seed", "3", "--limit", "redivis=5/10"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("sandbox listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1]
        assert not url.endswith(":0")
        health = requests.get(url + "/_sandbox/health", timeout=10)
        assert health.json()["seed"] == 3
        resp = requests.get(url + "/redivis/api/v1/users/jdoe/datasets", headers=AUTH, timeout=10)
        assert resp.headers["X-RateLimit-Limit"] == "5"
    finally:
        proc.terminate()
        code = proc.wait(timeout=10)
    assert code == 0
    assert proc.stderr is not None
    assert proc.stderr.read() == ""
