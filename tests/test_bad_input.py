# ruff: noqa: E501 - the case tables read best one case a line
"""Bad input, table-driven: malformed settings, catalogs and states, hostile API payloads.

Each case either fails with one clear line (naming the setting, the file and the place, or
the partition) or is handled as documented; never a traceback, never a record dropped
without a word. tests/test_config.py and tests/test_cli.py hold the first config cases
(missing credentials, unknown keys, bad URLs, negative limits); these extend them.
"""

from __future__ import annotations

import copy
import json
import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import requests_mock

from dataplatforms_sandbox import CREDENTIALS, Sandbox
from tap_dataplatforms.core.errors import ConfigError, SyncFailedError
from tap_dataplatforms.core.http import PlatformStream
from tap_dataplatforms.core.timestamps import to_rfc3339
from tap_dataplatforms.tap import TapDataPlatforms
from tests.helpers import SyncOutput, make_tap, run_sync
from tests.reliability import new_sandbox

TAP = str(Path(sys.executable).parent / "tap-dataplatforms")
GOOD = {"token": "tok-123456", "organizations": ["demo"]}
URL = "https://acme.example/api"

CONFIGS: list[tuple[str, dict[str, Any], str]] = [
    ("list as a string", {"redivis": {**GOOD, "organizations": "demo"}}, "redivis.organizations"),
    ("start_date not a date", {"redivis": GOOD, "start_date": "yesterday"}, "start_date"),
    ("start_date a number", {"redivis": GOOD, "start_date": 20240101}, "start_date"),
    ("zero timeout", {"redivis": GOOD, "request_timeout_seconds": 0}, "request_timeout_seconds"),
    ("negative retries", {"redivis": GOOD, "max_retries": -1}, "max_retries"),
    # Numbers as text are read as numbers (Meltano passes kind: string settings so); text
    # that is no number is still an error naming the setting.
    ("number as words", {"redivis": GOOD, "lookback_seconds": "sixty"}, "lookback_seconds"),
    ("boolean as a string", {"redivis": GOOD, "verify_tls": "no"}, "verify_tls"),
    ("empty secret", {"redivis": {**GOOD, "token": ""}}, "missing setting redivis.token"),
    ("secret a number", {"redivis": {**GOOD, "token": 12345}}, "redivis.token"),
    ("block a string", {"redivis": "tok-123456"}, "setting redivis"),
    ("URL without host", {"dexi": {"account_id": "a", "api_key": "k", "api_url": "https://"}}, "dexi.api_url"),
    ("URL without scheme", {"reinfer": {"token": "t", "api_url": "acme.reinfer.io"}}, "reinfer.api_url"),
    ("ids as numbers", {"dexi": {"account_id": "a", "api_key": "k", "run_ids": [1]}}, "dexi.run_ids"),
    ("zero budget", {"datalinx": {"api_url": URL, "api_key": "k", "max_requests_per_second": 0}}, "datalinx.max_requests_per_second"),
    ("negative streams", {"redivis": {**GOOD, "read_streams": -2}}, "redivis.read_streams"),
    ("negative wait", {"invision": {"api_key": "k", "api_url": URL, "await_timeout_seconds": -5}}, "invision.await_timeout_seconds"),
    ("zero poll", {"invision": {"api_key": "k", "api_url": URL, "poll_interval_seconds": 0}}, "invision.poll_interval_seconds"),
    ("negative partition", {"redivis": GOOD, "partition": {"index": -1, "count": 2}}, "partition.index"),
    ("partition half given", {"redivis": GOOD, "partition": {"index": 0}}, "partition.count"),
    ("fractional concurrency", {"redivis": GOOD, "max_concurrency": 2.5}, "max_concurrency"),
    ("SDK setting mistyped", {"redivis": GOOD, "stream_maps": "x"}, "stream_maps"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "config", "expected"), CONFIGS, ids=[c[0] for c in CONFIGS])
def test_malformed_settings_are_one_line_naming_the_setting(
    case: str, config: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        TapDataPlatforms(config=config, parse_env_config=False, validate_config=True)
    message = str(raised.value)
    assert "\n" not in message
    assert expected in message
    assert "tok-123456" not in message


# -- files given on the command line ---------------------------------------------------


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    sb = new_sandbox(seed=8)
    yield sb
    sb.stop()


@pytest.fixture(scope="module")
def files(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A working config for Redivis, and the catalog this version discovers for it."""
    work = tmp_path_factory.mktemp("files")
    config = {
        "redivis": {
            "api_url": sandbox.base_url("redivis"),
            **CREDENTIALS["redivis"],
            "organizations": ["demo"],
            "max_requests_per_second": 500,
        }
    }
    (work / "config.json").write_text(json.dumps(config))
    found = subprocess.run(
        [TAP, "--config", str(work / "config.json"), "--discover"],
        capture_output=True,
        text=True,
        check=True,
    )
    catalog = json.loads(found.stdout)
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            if item["breadcrumb"] == []:
                item["metadata"]["selected"] = True
    return {"work": work, "catalog": catalog}


def _renamed_parent(catalog: dict[str, Any]) -> dict[str, Any]:
    other = copy.deepcopy(catalog)
    first = next(e for e in other["streams"] if e["tap_stream_id"] == "redivis_datasets")
    first["tap_stream_id"] = first["stream"] = "redivis_projects"
    return other


def _broken_schema(catalog: dict[str, Any]) -> dict[str, Any]:
    other = copy.deepcopy(catalog)
    other["streams"][0]["schema"] = "object"
    return other


def _old_streams_only(catalog: dict[str, Any]) -> dict[str, Any]:
    other = copy.deepcopy(catalog)
    extra = copy.deepcopy(other["streams"][0])
    extra["tap_stream_id"] = extra["stream"] = "redivis_projects"
    other["streams"].append(extra)
    return other


Content = Callable[[dict[str, Any]], str | bytes]
# (case, option, content from the good catalog, error expected or None, records expected)
FILES: list[tuple[str, str, Content, str | None]] = [
    ("catalog truncated", "--catalog", lambda c: json.dumps(c)[:500], "--catalog: not valid JSON"),
    ("catalog a list", "--catalog", lambda c: "[]", "--catalog: the top level: expected an object"),
    ("catalog lacks a parent", "--catalog", lambda c: json.dumps(_renamed_parent(c)), "no entry for redivis_datasets"),
    ("catalog schema a string", "--catalog", lambda c: json.dumps(_broken_schema(c)), "streams[0].schema: expected an object"),
    ("catalog with an old stream", "--catalog", lambda c: json.dumps(_old_streams_only(c)), None),
    ("state truncated", "--state", lambda c: '{"bookmarks": {"redivis_datasets": {', "--state: not valid JSON"),
    ("state empty", "--state", lambda c: "", "--state: the file is empty"),
    ("state a list", "--state", lambda c: "[1, 2]", "--state: the top level: expected an object"),
    ("state bookmarks a string", "--state", lambda c: '{"bookmarks": "x"}', "--state: bookmarks: expected an object"),
    ("state partitions a string", "--state", lambda c: '{"bookmarks": {"redivis_tables": {"partitions": "x"}}}', "bookmarks.redivis_tables.partitions"),
    ("state of old streams", "--state", lambda c: json.dumps({"bookmarks": {"redivis_old": {"replication_key_value": "2020-01-01"}}, "currently_syncing": "redivis_old"}), None),
    ("state not UTF-8", "--state", lambda c: b'{"bookmarks": {"\xff": {}}}', "--state: not UTF-8"),
    ("config truncated", "--config", lambda c: '{"redivis": {"token": "tok-1', "--config: not valid JSON"),
    ("config not UTF-8", "--config", lambda c: b'{"redivis": {"token": "\xff"}}', "--config: not UTF-8"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "option", "content", "expected"), FILES, ids=[f[0] for f in FILES]
)
def test_malformed_files_fail_in_one_line_or_are_ignored_as_documented(
    files: dict[str, Any], case: str, option: str, content: Content, expected: str | None
) -> None:
    work: Path = files["work"]
    path = work / f"{case.replace(' ', '-')}.json"
    data = content(files["catalog"])
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    config = path if option == "--config" else work / "config.json"
    args = [TAP, "--config", str(config)]
    if option != "--config":
        args += [option, str(path)]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "| ERROR" in line]
    if expected is None:  # streams of another version are ignored; the rest is extracted
        assert result.returncode == 0, result.stderr[-1500:]
        assert errors == []
        assert '"RECORD"' in result.stdout
        return
    assert result.returncode == 2  # configuration
    assert result.stdout == ""
    assert len(errors) == 1, errors
    assert expected in errors[0]


# -- hostile API payloads ----------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PlatformStream, "retry_base_seconds", 0.001)


Mutation = Callable[[dict[str, Any]], Any]


def _set(path: tuple[Any, ...], value: Any) -> Mutation:
    def mutate(body: dict[str, Any]) -> dict[str, Any]:
        target: Any = body
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value
        return body

    return mutate


HUGE = "x" * 5_000_000
# (case, mutation of the real /users answer or raw bytes, outcome): the outcome is either
# the number of records (with the mutated values delivered as sent) or an error fragment
# of the failed partition.
PAYLOADS: list[Any] = [
    ("null field", _set(("data", 0, "email"), None), 12),
    ("null key", _set(("data", 1, "id"), None), 12),
    ("array as a string", _set(("data", 1, "roles"), "admin"), 12),
    ("timestamp as a number", _set(("data", 2, "created_at"), 12345), 12),
    ("huge string", _set(("data", 0, "name"), HUGE), 12),
    ("unknown field", _set(("data", 0, "favourite_colour"), "teal"), 12),  # delivered (open schema)
    ("data null", _set(("data",), None), 0),  # documented: an empty data ends the list
    ("data an object", _set(("data",), {"id": "usr_x"}), "expected a JSON object with 'data' holding a list, found a JSON object"),
    ("record a string", _set(("data", 0), "usr_1"), "holds a JSON string where a record"),
    ("not UTF-8", b'{"status":"success","data":[{"id":"usr_1","name":"\xff\xfe"}]}', "unreadable JSON body"),
    ("HTML page, status 200", b"<html><body><h1>Service unavailable</h1></body></html>", "unreadable JSON body"),
    ("truncated", b'{"status":"success","data":[{"id":"usr_1","na', "unreadable JSON body"),
]  # fmt: skip


def datalinx_users(sb: Sandbox, body: bytes) -> tuple[SyncOutput | None, str | None]:
    """Sync ``datalinx_users`` with ``body`` as the answer of every ``/users`` page; every
    other request reaches the sandbox."""
    base = sb.base_url("datalinx")
    config = {
        "datalinx": {
            "api_url": base,
            "api_key": CREDENTIALS["datalinx"]["api_key"],
            "max_requests_per_second": 1000,
        },
        "max_retries": 2,
    }
    with requests_mock.Mocker(real_http=True) as mock:
        mock.get(base + "/users", content=body, headers={"Content-Type": "application/json"})
        tap = make_tap(config)
        for stream in tap.streams.values():
            stream.selected = stream.name == "datalinx_users"
        try:
            return run_sync(tap), None
        except SyncFailedError as exc:
            return None, str(exc)


@pytest.mark.parametrize(
    ("case", "payload", "outcome"),
    PAYLOADS,
    ids=[(p.values if hasattr(p, "values") else p)[0] for p in PAYLOADS],
)
def test_hostile_payloads_are_delivered_as_sent_or_fail_their_partition_in_one_line(
    sandbox: Sandbox,
    case: str,
    payload: Mutation | bytes,
    outcome: int | str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    headers = {"X-API-Key": CREDENTIALS["datalinx"]["api_key"]}
    url = sandbox.base_url("datalinx") + "/users?page=1&page_size=100"
    real = requests.get(url, headers=headers, timeout=10).json()
    assert len(real["data"]) == 12
    if isinstance(payload, bytes):
        body, sent = payload, None
    else:
        sent = payload(copy.deepcopy(real))
        body = json.dumps(sent).encode()
    caplog.set_level(logging.INFO)
    out, error = datalinx_users(sandbox, body)
    assert "Traceback" not in caplog.text
    if isinstance(outcome, str):
        assert error is not None
        (summary, line) = error.splitlines()
        assert summary == "1 partition(s) failed:"
        assert line.strip().startswith("datalinx_users: Datalinx: ")
        assert outcome in line
        return
    assert error is None
    assert out is not None
    records = out.records["datalinx_users"]
    assert len(records) == outcome
    if sent is not None and outcome:
        # Every value as the platform sent it (timestamps in RFC 3339 UTC, as documented):
        # no field lost, none changed; a property the schema does not declare too (the
        # schema is open), without a warning.
        for got, row in zip(records, sent["data"], strict=True):
            assert got == {k: as_rfc3339(k, v) for k, v in row.items()}
        assert "not found in catalog schema" not in caplog.text


@pytest.mark.parametrize(
    ("sent", "delivered"),
    [("false", False), ("TRUE", True), ("0", False), (" yes ", True), ("maybe", None)],
)
def test_text_in_a_boolean_field_arrives_as_the_boolean_it_names(
    sandbox: Sandbox, sent: str, delivered: Any
) -> None:
    # The SDK's conformance alone would deliver every one of these as true.
    headers = {"X-API-Key": CREDENTIALS["datalinx"]["api_key"]}
    url = sandbox.base_url("datalinx") + "/users?page=1&page_size=100"
    real = requests.get(url, headers=headers, timeout=10).json()
    body = _set(("data", 0, "is_active"), sent)(copy.deepcopy(real))
    out, error = datalinx_users(sandbox, json.dumps(body).encode())
    assert error is None
    assert out is not None
    records = out.records["datalinx_users"]
    assert [r["is_active"] for r in records[:1]] == [delivered]
    assert [r["is_active"] for r in records[1:]] == [u["is_active"] for u in real["data"][1:]]


def as_rfc3339(name: str, value: Any) -> Any:
    # Datalinx times are ISO 8601; a number is taken as epoch seconds.
    if name.endswith("_at") and value is not None:
        return to_rfc3339(value, epoch_unit="s")
    return value


def gl_actuals_through(sb: Sandbox, answers: list[dict[str, Any]]) -> tuple[Any, SyncOutput]:
    """Sync InVision's ``GL_Actuals`` table with ``answers`` as its successive responses
    (discovery's sample first, then the sync); the rest comes from the sandbox."""
    url = sb.base_url("invision") + "/api/pub/v1/db/tables/GL_Actuals/data"
    config = {
        "invision": {
            "api_url": sb.base_url("invision"),
            **CREDENTIALS["invision"],
            "tables": ["GL_Actuals"],
            "max_requests_per_second": 1000,
        }
    }
    with requests_mock.Mocker(real_http=True) as mock:
        mock.get(url, answers)
        tap = make_tap(config)
        for stream in tap.streams.values():
            stream.selected = stream.name == "invision_table__gl_actuals"
        return tap, run_sync(tap, finish=False)


def failed_partition(tap: Any) -> str:
    """The one line naming the failed partition when the run ends."""
    with pytest.raises(SyncFailedError) as failed:
        tap.finish()
    (summary, line) = str(failed.value).splitlines()
    assert summary == "1 partition(s) failed:"
    return line


def test_an_invision_table_element_that_is_no_row_fails_the_table_in_one_line(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, such an element vanished from the table without a word."""
    rows = [{"Account": "4000"}, "4010", {"Account": "4020"}]
    # Discovery samples a good answer; the sync reads the one with the stray element.
    tap, out = gl_actuals_through(sandbox, [{"json": [{"Account": "4000"}]}, {"json": rows}])
    assert out.records["invision_table__gl_actuals"] == [{"Account": "4000"}]
    line = failed_partition(tap)
    assert "table 'GL_Actuals' holds a JSON string where a row (an object) belongs" in line
    assert "Traceback" not in caplog.text


def test_an_invision_table_discovery_could_not_sample_fails_instead_of_arriving_empty(
    sandbox: Sandbox,
) -> None:
    """Without a sample the schema has no columns; before, every row arrived as ``{}``."""
    failing = {"status_code": 500, "json": {"Message": "An error has occurred."}}
    # Discovery's sample (two tries) fails; the sync's read would work.
    tap, out = gl_actuals_through(sandbox, [failing, failing, {"json": [{"Account": "4000"}]}])
    assert out.records["invision_table__gl_actuals"] == []
    line = failed_partition(tap)
    assert "table 'GL_Actuals' could not be sampled during discovery" in line
