"""Dexi against requests-mock: auth, pages, budgets, executions' bookmarks, results, files."""

from __future__ import annotations

import copy
import hashlib
import io
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
import requests
import requests_mock as rm
import urllib3

from tap_dataplatforms.core import readahead
from tap_dataplatforms.core.errors import (
    PlatformAuthError,
    PlatformUnavailableError,
    SyncFailedError,
)
from tap_dataplatforms.core.http import PlatformStream
from tap_dataplatforms.dexi.client import access_digest, encode_file_id
from tap_dataplatforms.dexi.columns import conform, infer_columns, run_slugs, slugify
from tap_dataplatforms.dexi.executions import RunStarter
from tap_dataplatforms.dexi.files import local_path, parse_file_cell
from tests.helpers import FakeClock, make_tap, run_sync

BASE = "https://dexi.test/"
ACCOUNT = "acc-unit-1"
KEY = "dexi-unit-key-1234"
RUN = "run-1"
T0 = 1_714_557_600_000  # 2024-05-01T10:00:00Z
MIN = 60_000


def config(**extra: Any) -> dict[str, Any]:
    return {"dexi": {"api_url": BASE, "account_id": ACCOUNT, "api_key": KEY, **extra}}


def execution(n: int, starts: int, finished: int | None, state: str = "OK") -> dict[str, Any]:
    return {
        "_id": f"ex-{n}",
        "state": state,
        "starts": starts,
        "finished": finished,
        "robotId": "robot-1",
        "runId": RUN,
    }


def page(rows: list[Any], offset: int, total: int | None = None) -> dict[str, Any]:
    return {"offset": offset, "totalRows": len(rows) if total is None else total, "rows": rows}


class Account:
    """One run; its executions (newest first by start) and one result per execution."""

    def __init__(self, mock: rm.Mocker, executions: list[dict[str, Any]]) -> None:
        self.mock = mock
        self.executions = executions
        self.results: dict[str, dict[str, Any]] = {}
        self.page_cap = 200
        # requests-mock tries the latest registration first: the catch-all goes first.
        mock.get(rm.ANY, status_code=404, json={"error": True, "code": 404})
        mock.get(BASE + "runs", json=self.runs)
        mock.get(BASE + f"runs/{RUN}/executions", json=self.list_executions)

    def runs(self, request: Any, context: Any) -> dict[str, Any]:
        run = {"_id": RUN, "name": "Price watch", "accountId": ACCOUNT, "robotId": "robot-1"}
        return page([run], 0)

    def list_executions(self, request: Any, context: Any) -> dict[str, Any]:
        offset = int(request.qs.get("offset", ["0"])[0])
        limit = min(int(request.qs.get("limit", ["30"])[0]), self.page_cap)
        ordered = sorted(self.executions, key=lambda e: e["starts"], reverse=True)
        return page(ordered[offset : offset + limit], offset, len(ordered))

    def result(self, execution_id: str, headers: list[str], rows: list[list[Any]]) -> None:
        body = {"headers": headers, "rows": rows, "totalRows": len(rows)}
        self.results[execution_id] = body
        self.mock.get(BASE + f"executions/{execution_id}/result", json=body)

    def listing_offsets(self) -> list[str]:
        return [
            r.qs["offset"][0]
            for r in self.mock.request_history
            if r.path == f"/runs/{RUN}/executions" and r.qs.get("limit") == ["200"]
        ]


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PlatformStream, "retry_base_seconds", 0.001)


# -- auth ---------------------------------------------------------------------------------


def test_access_digest_is_md5_of_account_then_key_in_lowercase_hex() -> None:
    assert access_digest("acc-123", "key-abc") == "9b94952c145313e1874889d9809e63ae"
    # A digest with a leading zero keeps it (a big-integer rendering would drop it).
    account = next(f"a{i}" for i in range(1000) if access_digest(f"a{i}", "k")[0] == "0")
    digest = access_digest(account, "k")
    assert digest.startswith("0")
    assert len(digest) == 32
    assert access_digest("key", "acc") != access_digest("acc", "key")


def test_every_request_carries_both_headers(requests_mock: rm.Mocker) -> None:
    Account(requests_mock, [])
    run_sync(make_tap(config(), clock=FakeClock()))
    assert requests_mock.request_history
    for request in requests_mock.request_history:
        assert request.headers["X-DexiIO-Account"] == ACCOUNT
        assert request.headers["X-DexiIO-Access"] == access_digest(ACCOUNT, KEY)
        assert request.headers["Accept"] == "application/json"
        assert request.headers["User-Agent"].startswith("tap-dataplatforms/")


def test_bad_credentials_fail_fast_in_one_line_without_the_digest(
    requests_mock: rm.Mocker, caplog: pytest.LogCaptureFixture
) -> None:
    digest = access_digest(ACCOUNT, KEY)
    requests_mock.get(
        BASE + "runs",
        status_code=401,
        json={"error": True, "code": 401, "message": f"Bad access header {digest}"},
    )
    with caplog.at_level(logging.DEBUG), pytest.raises(PlatformAuthError) as raised:
        run_sync(make_tap(config(), clock=FakeClock()))
    message = str(raised.value)
    assert message.startswith("Dexi: HTTP 401")
    assert "Bad access header ***" in message
    assert "\n" not in message
    assert digest not in caplog.text
    assert len(requests_mock.request_history) == 1


# -- pages and budgets --------------------------------------------------------------------


def test_offset_grows_by_rows_received_until_total_rows(requests_mock: rm.Mocker) -> None:
    runs = [{"_id": f"run-{i}", "name": f"Run {i}"} for i in range(320)]
    asked: list[tuple[str, str]] = []

    def listing(request: Any, context: Any) -> dict[str, Any]:
        offset = int(request.qs["offset"][0])
        asked.append((request.qs["offset"][0], request.qs["limit"][0]))
        # This server silently serves only 150 per page, whatever the limit.
        return page(runs[offset : offset + 150], offset, len(runs))

    requests_mock.get(rm.ANY, json=page([], 0))
    requests_mock.get(BASE + "runs", json=listing)
    # Discovery reads each run's executions (real clock): a roomy budget keeps it quick.
    tap = make_tap(config(max_requests_per_second=10_000), clock=FakeClock())
    ids = [r["_id"] for r in tap.streams["dexi_runs"].get_records(None)]
    assert ids == [r["_id"] for r in runs]
    assert asked[-3:] == [("0", "200"), ("150", "200"), ("300", "200")]


def test_dataset_rows_page_in_the_body_on_the_write_budget(requests_mock: rm.Mocker) -> None:
    rows = [{"sku": f"A-{i}", "stock": i} for i in range(30)]
    bodies: list[dict[str, Any]] = []

    def rows_page(request: Any, context: Any) -> dict[str, Any]:
        body = request.json()
        bodies.append(body)
        offset = body["offset"]
        return page(rows[offset : offset + 1], offset, len(rows))  # one row per page

    requests_mock.post(BASE + "datasets/ds%201/rows", json=rows_page)
    requests_mock.get(BASE + "runs", json=page([], 0))
    clock = FakeClock()
    tap = make_tap(config(dataset_ids=["ds 1"]), clock=clock)
    out = run_sync(tap)
    records = out.records["dexi_dataset_rows__ds_1"]
    assert [r["_row_index"] for r in records] == list(range(30))
    assert records[3] == {"sku": "A-3", "stock": 3, "_row_index": 3}
    # Whole numbers are declared number: fractions arriving later need no type change.
    assert out.schemas["dexi_dataset_rows__ds_1"]["properties"]["stock"]["type"] == [
        "number",
        "null",
    ]
    assert bodies[2] == {"offset": 1, "limit": 200}  # bodies[0] was discovery's
    # 30 POSTs at 15 per second (discovery ran before the fake clock was installed).
    assert clock.now >= 1.0
    budgets = {b.name.rsplit(":", 1)[1]: b for b in tap.runtime.budgets}
    assert budgets["writes"].acquired == 30
    assert budgets["writes"].rates[0].limit == 15
    assert budgets["requests"].rates[0].limit == 75


# -- executions -----------------------------------------------------------------------------


def test_only_finished_executions_sorted_by_finished(requests_mock: rm.Mocker) -> None:
    Account(
        requests_mock,
        [
            execution(1, T0, T0 + 50 * MIN),  # long, finished last
            execution(2, T0 + 1 * MIN, T0 + 2 * MIN, "FAILED"),
            execution(3, T0 + 3 * MIN, None, "RUNNING"),
            execution(4, T0 + 4 * MIN, None, "QUEUED"),
            execution(5, T0 + 5 * MIN, T0 + 6 * MIN, "STOPPED"),
            execution(6, T0 + 7 * MIN, 0, "PENDING"),  # a zero end time is no end time
        ],
    )
    out = run_sync(make_tap(config(), clock=FakeClock()))
    records = out.records["dexi_executions"]
    assert [r["_id"] for r in records] == ["ex-2", "ex-5", "ex-1"]
    assert records[0]["starts"] == "2024-05-01T10:01:00+00:00"
    assert records[0]["finished"] == "2024-05-01T10:02:00+00:00"
    partition = out.states[-1]["bookmarks"]["dexi_executions"]["partitions"][0]
    assert partition["replication_key_value"] == "2024-05-01T10:50:00+00:00"
    assert partition["open_execution_ids"] == ["ex-3", "ex-4", "ex-6"]


def test_an_execution_that_started_before_the_bookmark_and_finished_after_it_comes(
    requests_mock: rm.Mocker,
) -> None:
    account = Account(
        requests_mock,
        [execution(1, T0, None, "RUNNING")]
        + [execution(n, T0 + n * MIN, T0 + n * MIN + 30_000) for n in range(2, 260)],
    )
    first = run_sync(make_tap(config(), clock=FakeClock()))
    assert len(first.records["dexi_executions"]) == 258
    state = first.states[-1]
    # It finishes now, after the newest bookmark... and one more execution finishes too,
    # but earlier than the bookmark (it was open at the first sync, found on page 2).
    account.executions[0].update(state="OK", finished=T0 + 400 * MIN)
    requests_mock.reset_mock()
    second = run_sync(make_tap(config(), state=copy.deepcopy(state), clock=FakeClock()))
    assert [r["_id"] for r in second.records["dexi_executions"]] == ["ex-1"]
    assert account.listing_offsets() == ["0", "200"]  # the open one was on page 2


def test_an_execution_open_at_the_last_sync_comes_even_if_it_finished_earlier(
    requests_mock: rm.Mocker,
) -> None:
    """Open when its page was read, finished before a later page's execution did."""
    account = Account(
        requests_mock,
        [execution(1, T0, T0 + 90 * MIN), execution(2, T0 + 5 * MIN, None, "RUNNING")],
    )
    first = run_sync(make_tap(config(), clock=FakeClock()))
    assert [r["_id"] for r in first.records["dexi_executions"]] == ["ex-1"]
    account.executions[1].update(state="OK", finished=T0 + 80 * MIN)  # before the bookmark
    second = run_sync(make_tap(config(), state=copy.deepcopy(first.states[-1])))
    assert [r["_id"] for r in second.records["dexi_executions"]] == ["ex-2"]
    partition = second.states[-1]["bookmarks"]["dexi_executions"]["partitions"][0]
    assert partition["replication_key_value"] == "2024-05-01T11:30:00+00:00"  # not moved back
    third = run_sync(make_tap(config(), state=copy.deepcopy(second.states[-1])))
    assert third.records["dexi_executions"] == []


def test_the_list_is_read_only_down_to_the_oldest_open_start(requests_mock: rm.Mocker) -> None:
    hour = 60 * MIN
    account = Account(
        requests_mock,
        [execution(n, T0 + n * hour, T0 + n * hour + 30_000) for n in range(1, 451)],
    )
    first = run_sync(make_tap(config(), clock=FakeClock()))
    assert account.listing_offsets() == ["0", "200", "400"]
    account.executions.append(execution(999, T0 + 999 * hour, T0 + 999 * hour + 1))
    # Listed out of order (started before the newest known start): within the margin.
    account.executions.append(execution(998, T0 + 448 * hour, T0 + 999 * hour + 2))
    requests_mock.reset_mock()
    second = run_sync(make_tap(config(), state=copy.deepcopy(first.states[-1])))
    assert [r["_id"] for r in second.records["dexi_executions"]] == ["ex-999", "ex-998"]
    assert account.listing_offsets() == ["0"]


def test_a_listing_that_changes_while_paging_is_read_again(requests_mock: rm.Mocker) -> None:
    account = Account(
        requests_mock,
        [execution(n, T0 + n * MIN, T0 + n * MIN + 1) for n in range(1, 301)],
    )
    original = account.list_executions

    def deleting(request: Any, context: Any) -> dict[str, Any]:
        if request.qs["offset"] == ["200"] and len(account.executions) == 300:
            del account.executions[-5:]  # five of the newest vanish: rows move up a page
        return original(request, context)

    requests_mock.get(BASE + f"runs/{RUN}/executions", json=deleting)
    out = run_sync(make_tap(config(), clock=FakeClock()))
    got = [r["_id"] for r in out.records["dexi_executions"]]
    assert len(got) == len(set(got))
    assert {e["_id"] for e in account.executions} <= set(got)
    assert account.listing_offsets() == ["0", "200", "0", "200"]


# -- results --------------------------------------------------------------------------------


def test_result_rows_are_typed_and_carry_their_ids(requests_mock: rm.Mocker) -> None:
    account = Account(requests_mock, [execution(1, T0, T0 + MIN), execution(2, T0 + 2, None)])
    headers = ["url", "qty", "price", "ok", "tags", "mixed", "empty", "error"]
    account.result(
        "ex-1",
        headers,
        [
            ["https://a", 3, 2.5, True, ["x"], 1, None, None],
            ["https://b", 4, 3, False, [], "n/a", None, "Timeout"],
        ],
    )
    out = run_sync(make_tap(config(), clock=FakeClock()))
    schema = out.schemas["dexi_results__price_watch"]["properties"]
    assert {k: v["type"][0] for k, v in schema.items()} == {
        "url": "string",
        "qty": "number",  # whole numbers are declared number (a SQL column that fits fractions)
        "price": "number",
        "ok": "boolean",
        "tags": "array",
        "mixed": "string",
        "empty": "string",
        "error": "string",
        "_execution_id": "string",
        "_run_id": "string",
        "_row_index": "integer",
    }
    records = out.records["dexi_results__price_watch"]
    assert records[1] == {
        "url": "https://b",
        "qty": 4,
        "price": 3,
        "ok": False,
        "tags": [],
        "mixed": "n/a",
        "empty": None,
        "error": "Timeout",
        "_execution_id": "ex-1",
        "_run_id": RUN,
        "_row_index": 1,
    }
    assert records[0]["mixed"] == "1"
    assert type(records[0]["qty"]) is int


def test_a_vanished_result_is_skipped_and_a_failing_one_holds_the_bookmark(
    requests_mock: rm.Mocker,
) -> None:
    account = Account(
        requests_mock,
        [execution(n, T0 + n * MIN, T0 + n * MIN + 1) for n in (1, 2, 3)],
    )
    account.result("ex-1", ["a"], [[1]])
    account.result("ex-3", ["a"], [[3]])
    requests_mock.get(BASE + "executions/ex-2/result", status_code=503, json={"error": True})
    tap = make_tap(config(), clock=FakeClock())
    out = run_sync(tap, finish=False)
    # ex-2 went out before its result failed, but the run stops there, its bookmark before it.
    assert [r["_id"] for r in out.records["dexi_executions"]] == ["ex-1", "ex-2"]
    with pytest.raises(SyncFailedError, match="ex-2"):
        tap.finish()
    partition = out.states[-1]["bookmarks"]["dexi_executions"]["partitions"][0]
    assert partition["replication_key_value"] == "2024-05-01T10:01:00.001000+00:00"

    # ex-2 is deleted meanwhile: a 404 on a result is only logged.
    requests_mock.get(
        BASE + "executions/ex-2/result",
        status_code=404,
        json={"error": True, "code": 404, "message": "Execution not found"},
    )
    again = run_sync(make_tap(config(), state=copy.deepcopy(out.states[-1])))
    # ex-1 sits on the bookmark and was delivered: it does not come again.
    assert [r["_id"] for r in again.records["dexi_executions"]] == ["ex-2", "ex-3"]
    assert [r["_execution_id"] for r in again.records["dexi_results__price_watch"]] == ["ex-3"]


def test_slugs_and_columns() -> None:
    assert slugify("Price watch DE") == "price_watch_de"
    assert slugify("priceWatchFR") == "price_watch_fr"
    assert slugify("Jobs / listings (EU)") == "jobs_listings_eu"
    # Listed newest first: the oldest of two runs sharing a slug keeps it bare.
    slugs = run_slugs([("abcdef123456", "Store"), ("0123456789", "store"), ("x", "Other")])
    assert slugs == {"abcdef123456": "store_abcdef12", "0123456789": "store", "x": "other"}
    assert run_slugs([("r1", "!!!")]) == {"r1": "run"}
    kinds = infer_columns(["a", "b", "c"], [[1, 1, True], [2.5, None, 1], [None, 2, None]])
    assert kinds == {"a": "number", "b": "integer", "c": "string"}
    assert conform(True, "string") == "true"
    assert conform(2.0, "integer") == 2


# -- files ----------------------------------------------------------------------------------

FILE_ID = "accounts/acc-unit-1/robots/r/runs/run-1/executions/ex-1/results/res/lines/l 1/image"


def test_file_cells_and_ids() -> None:
    assert parse_file_cell(f"FILE:image/jpeg;2974;{FILE_ID}") == ("image/jpeg", 2974, FILE_ID)
    assert parse_file_cell("https://example.com") is None
    # Slashes stay; what is unsafe in a path is percent-encoded.
    assert encode_file_id("accounts/a b/c?d#e%f") == "accounts/a%20b/c%3Fd%23e%25f"
    assert local_path("out", "accounts/../../etc/passwd") == Path("out/accounts/etc/passwd")


def test_files_are_streamed_to_disk_and_described(requests_mock: rm.Mocker, tmp_path: Path) -> None:
    account = Account(requests_mock, [execution(1, T0, T0 + MIN)])
    cell = f"FILE:image/png;5;{FILE_ID}"
    account.result("ex-1", ["url", "image"], [["https://a", cell], ["https://b", cell]])
    content = b"\x89PNG!" * 1000
    file_url = BASE + "executions/ex-1/file/" + encode_file_id(FILE_ID)
    requests_mock.get(file_url, content=content, headers={"Content-Type": "image/png"})
    files_dir = tmp_path / "files"
    out = run_sync(
        make_tap(
            config(download_files=True, files_dir=str(files_dir)),
            clock=FakeClock(),
        )
    )
    (record,) = out.records["dexi_files"]
    assert record["file_id"] == FILE_ID
    assert record["execution_id"] == "ex-1"
    assert record["run_id"] == RUN
    assert record["mime_type"] == "image/png"
    assert record["size"] == len(content)
    assert record["sha256"] == hashlib.sha256(content).hexdigest()
    assert Path(record["path"]) == local_path(str(files_dir), FILE_ID)
    assert Path(record["path"]).read_bytes() == content
    assert not list(files_dir.rglob(".part-*"))
    assert [r["image"] for r in out.records["dexi_results__price_watch"]] == [cell, cell]
    downloads = [r for r in requests_mock.request_history if "/file/" in r.path]
    assert len(downloads) == 1
    assert "/lines/l%201/image" in downloads[0].url
    # The result was read once: the files stream took the cells the results stream saw.
    results = [r for r in requests_mock.request_history if r.path.endswith("/result")]
    assert len(results) == 2  # discovery, then the sync


class _BreakingBody(io.BytesIO):
    """A body whose connection drops after ``at`` bytes."""

    def __init__(self, content: bytes, at: int) -> None:
        super().__init__(content)
        self.at = at

    def read(self, size: int | None = -1) -> bytes:
        if self.tell() >= self.at:
            raise urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead")
        limit = self.at - self.tell()
        return super().read(limit if size is None or size < 0 else min(size, limit))


def test_a_file_is_read_as_it_arrives_and_downloaded_again_when_it_breaks_off(
    requests_mock: rm.Mocker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file goes to disk as it arrives (never whole in memory), and one whose
    connection drops mid-way is downloaded again from the start, leaving a whole file."""
    account = Account(requests_mock, [execution(1, T0, T0 + MIN)])
    cell = f"FILE:image/png;5;{FILE_ID}"
    account.result("ex-1", ["image"], [[cell]])
    content = b"\x89PNG!" * 100_000
    file_url = BASE + "executions/ex-1/file/" + encode_file_id(FILE_ID)
    headers = {"Content-Type": "image/png"}
    broken = _BreakingBody(content, at=len(content) // 2)
    requests_mock.get(file_url, [{"body": broken, "headers": headers}, {"content": content}])
    unread: list[bool] = []
    send = PlatformStream.send_prepared

    def recorded(self: Any, prepared: Any, context: Any, **options: Any) -> Any:
        response = send(self, prepared, context, **options)
        if "/file/" in prepared.url:
            unread.append(not response._content_consumed)
        return response

    monkeypatch.setattr(PlatformStream, "send_prepared", recorded)
    files_dir = tmp_path / "files"
    out = run_sync(
        make_tap(config(download_files=True, files_dir=str(files_dir)), clock=FakeClock())
    )
    (record,) = out.records["dexi_files"]
    assert record["size"] == len(content)
    assert record["sha256"] == hashlib.sha256(content).hexdigest()
    assert Path(record["path"]).read_bytes() == content
    assert not list(files_dir.rglob(".part-*"))
    assert unread == [True, True]  # both tries opened as streams, the first broke off


def test_listing_without_total_rows_and_with_iso_times(requests_mock: rm.Mocker) -> None:
    executions = [
        {"_id": f"ex-{n}", "state": "OK", "runId": RUN, "starts": f"{T0 + n * MIN}"}
        | {"finished": f"2024-05-01T12:{n % 60:02d}:00Z"}
        for n in range(250)
    ]
    account = Account(requests_mock, [])

    def no_total(request: Any, context: Any) -> dict[str, Any]:
        offset = int(request.qs["offset"][0])
        return {"offset": offset, "rows": copy.deepcopy(executions[offset : offset + 200])}

    requests_mock.get(BASE + f"runs/{RUN}/executions", json=no_total)
    out = run_sync(make_tap(config(), clock=FakeClock()))
    got = out.records["dexi_executions"]
    assert len(got) == 250
    assert got[0]["finished"] == "2024-05-01T12:00:00+00:00"
    assert account.listing_offsets() == ["0", "200"]


def test_execute_runs_gives_up_waiting_and_extracts_what_is_there(
    requests_mock: rm.Mocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(RunStarter, "TIMEOUT_SECONDS", 100.0)
    Account(requests_mock, [execution(1, T0, T0 + MIN)])
    started = execution(7, T0 + 5 * MIN, None, "QUEUED")
    requests_mock.post(BASE + f"runs/{RUN}/execute", json=started)
    requests_mock.get(BASE + "executions/ex-7", json={**started, "state": "RUNNING"})
    clock = FakeClock()
    tap = make_tap(config(execute_runs=True), clock=clock)
    out = run_sync(tap, finish=False)
    assert [r["_id"] for r in out.records["dexi_executions"]] == ["ex-1"]
    with pytest.raises(SyncFailedError, match="ex-7 of run run-1 still RUNNING"):
        tap.finish()
    assert 60 <= clock.now <= 100
    posts = [r for r in requests_mock.request_history if r.method == "POST"]
    assert [r.path for r in posts] == [f"/runs/{RUN}/execute"]
    assert posts[0].qs == {"connect": ["false"]}


def test_partition_setting_splits_runs_between_processes(requests_mock: rm.Mocker) -> None:
    runs = [{"_id": f"run-{i}", "name": f"Run {i}"} for i in range(40)]
    requests_mock.get(rm.ANY, json=page([], 0))
    requests_mock.get(BASE + "runs", json=page(runs, 0))
    seen: list[str] = []
    for index in range(3):
        settings = config(max_requests_per_second=10_000)
        tap = make_tap({**settings, "partition": {"index": index, "count": 3}}, clock=FakeClock())
        mine = [r["_id"] for r in tap.streams["dexi_runs"].get_records(None)]
        assert mine
        seen += mine
    assert sorted(seen) == sorted(r["_id"] for r in runs)


def test_a_catalog_gives_the_result_columns_without_reading_results(
    requests_mock: rm.Mocker,
) -> None:
    account = Account(requests_mock, [execution(1, T0, T0 + MIN)])
    account.result("ex-1", ["url", "qty"], [["https://a", 1]])
    catalog = make_tap(config(), clock=FakeClock()).catalog_dict
    requests_mock.reset_mock()
    out = run_sync(make_tap(config(), catalog=catalog, clock=FakeClock()))
    results = [r for r in requests_mock.request_history if r.path.endswith("/result")]
    assert len(results) == 1  # the sync's own read, none at discovery
    assert out.schemas["dexi_results__price_watch"]["properties"]["qty"]["type"] == [
        "number",
        "null",
    ]
    assert out.records["dexi_results__price_watch"][0]["qty"] == 1


@pytest.mark.parametrize("concurrency", [1, 4])
def test_results_are_read_ahead_in_parallel_in_emission_order(
    requests_mock: rm.Mocker, concurrency: int
) -> None:
    account = Account(
        requests_mock, [execution(n, T0 + n * MIN, T0 + n * MIN + 1) for n in range(1, 21)]
    )
    threads: list[str] = []

    def result(request: Any, context: Any) -> dict[str, Any]:
        threads.append(threading.current_thread().name)
        n = int(request.path.split("/")[2].removeprefix("ex-"))
        return {"headers": ["n"], "rows": [[n], [n * 10]]}

    for n in range(1, 21):
        requests_mock.get(BASE + f"executions/ex-{n}/result", json=result)
    tap = make_tap({**config(), "max_concurrency": concurrency}, clock=FakeClock())
    out = run_sync(tap)
    records = out.records["dexi_results__price_watch"]
    assert [(r["_execution_id"], r["n"]) for r in records] == [
        (f"ex-{n}", v) for n in range(1, 21) for v in (n, n * 10)
    ]
    sync_threads = threads[-20:]
    ahead = [t for t in sync_threads if t.startswith(readahead.THREAD_PREFIX)]
    assert (len(ahead) > 0) == (concurrency > 1)
    assert account.listing_offsets() == ["0"]


def test_a_dataset_out_of_reach_fails_alone(requests_mock: rm.Mocker) -> None:
    Account(requests_mock, [execution(1, T0, T0 + MIN)])
    requests_mock.post(BASE + "datasets/ok/rows", json=page([{"sku": "A"}], 0))
    requests_mock.post(
        BASE + "datasets/gone/rows",
        status_code=403,
        json={"error": True, "code": 403, "message": "No access to this dataset"},
    )
    tap = make_tap(config(dataset_ids=["ok", "gone"]), clock=FakeClock())
    out = run_sync(tap, finish=False)
    assert out.records["dexi_dataset_rows__ok"] == [{"sku": "A", "_row_index": 0}]
    assert [r["_id"] for r in out.records["dexi_executions"]] == ["ex-1"]
    with pytest.raises(SyncFailedError, match=r"dexi_dataset_rows__gone.*No access"):
        tap.finish()


def test_an_unreachable_host_fails_fast_in_one_line(requests_mock: rm.Mocker) -> None:
    requests_mock.get(rm.ANY, exc=requests.exceptions.ConnectionError("Connection refused"))
    with pytest.raises(PlatformUnavailableError) as raised:
        make_tap(config(), clock=FakeClock()).streams  # noqa: B018 - discovery reaches out
    assert str(raised.value) == "Dexi: cannot reach https://dexi.test/: connection refused"
    assert len(requests_mock.request_history) == 2  # one retry, then the verdict


def test_a_new_run_with_the_same_name_renames_no_existing_results_stream() -> None:
    before = run_slugs([("b2", "Price watch"), ("a1", "Store")])
    # A newer run named like an existing one: listed first, newest first.
    after = run_slugs([("c3d4e5f6a7", "price watch"), ("b2", "Price watch"), ("a1", "Store")])
    assert after["b2"] == before["b2"] == "price_watch"
    assert after["a1"] == before["a1"] == "store"
    assert after["c3d4e5f6a7"] == "price_watch_c3d4e5f6"


def test_result_stream_names_pin_a_run_s_stream_name() -> None:
    runs = [("c3", "Price watch"), ("b2", "Price watch")]
    assert run_slugs(runs, {"c3": "Price watch (new)"}) == {
        "c3": "price_watch_new",
        "b2": "price_watch",
    }
    assert run_slugs(runs, {"b2": "legacy_prices"}) == {"c3": "price_watch", "b2": "legacy_prices"}
