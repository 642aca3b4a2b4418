"""Dexi results parsed as they arrive: a body cut off mid-way, headers after rows, types."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import requests_mock as rm

from tap_dataplatforms.core.errors import SyncFailedError
from tap_dataplatforms.core.http import PlatformStream
from tap_dataplatforms.core.progress import Progress
from tap_dataplatforms.dexi.columns import conform
from tests.helpers import FakeClock, make_tap, run_sync
from tests.test_dexi_unit import BASE, MIN, T0, Account, config, execution

STREAM = "dexi_results__price_watch"
HEADERS = ["url", "qty", "ok"]
ROWS = [[f"https://x/{n}", n, n % 2 == 0] for n in range(50)]


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PlatformStream, "retry_base_seconds", 0.001)


def body_bytes(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def test_a_result_cut_off_mid_way_is_read_again_without_repeating_rows(
    requests_mock: rm.Mocker,
) -> None:
    account = Account(requests_mock, [execution(1, T0, T0 + MIN)])
    account.result("ex-1", HEADERS, ROWS)  # what discovery reads
    whole = body_bytes({"headers": HEADERS, "rows": ROWS, "totalRows": len(ROWS)})
    tap = make_tap(config(), clock=FakeClock())
    tap.streams  # noqa: B018 - discovery, against the whole body
    requests_mock.get(
        BASE + "executions/ex-1/result",
        [{"content": whole[: len(whole) // 2]}, {"content": whole}],
    )
    out = run_sync(tap)
    records = out.records[STREAM]
    assert [r["_row_index"] for r in records] == list(range(len(ROWS)))
    assert [r["url"] for r in records] == [row[0] for row in ROWS]
    reads = [r for r in requests_mock.request_history if r.path.endswith("/result")]
    assert len(reads) == 3  # discovery, the cut read, the read again


def test_rows_before_the_headers_are_kept_until_the_headers_come(
    requests_mock: rm.Mocker,
) -> None:
    account = Account(requests_mock, [execution(1, T0, T0 + MIN)])
    account.result("ex-1", HEADERS, ROWS[:3])
    tap = make_tap(config(), clock=FakeClock())
    tap.streams  # noqa: B018
    reordered = b'{"rows": %s, "totalRows": 3, "headers": %s}' % (
        json.dumps(ROWS[:3]).encode(),
        json.dumps(HEADERS).encode(),
    )
    requests_mock.get(BASE + "executions/ex-1/result", content=reordered)
    records = run_sync(tap).records[STREAM]
    assert [(r["url"], r["qty"], r["ok"]) for r in records] == [tuple(r) for r in ROWS[:3]]


def test_cells_of_another_type_are_fitted_to_the_column() -> None:
    # what the SDK's conformance did for boolean-only columns, now done per cell here
    assert conform(1, "boolean") is True
    assert conform(0, "boolean") is False
    assert conform(True, "boolean") is True
    assert conform(2.0, "integer") == 2
    assert conform(5, "string") == "5"


def test_an_opened_result_is_not_read_before_its_rows_are_emitted(
    requests_mock: rm.Mocker,
) -> None:
    # A read-ahead result holds a connection, not a parsed body.
    account = Account(requests_mock, [execution(1, T0, T0 + MIN)])
    account.result("ex-1", HEADERS, ROWS)
    tap = make_tap(config(), clock=FakeClock())
    stream = tap.streams[STREAM]
    stream._progress = Progress(STREAM, logging.getLogger("test"))
    response = stream.open_result("ex-1")
    assert response._content_consumed is False
    rows = list(stream.rows_streamed("ex-1", response, None))
    assert [r["_row_index"] for r in rows] == list(range(len(ROWS)))
    # totalRows ends this small body: within the first bytes, where it is looked for
    assert stream._progress.total == len(ROWS)


def test_stream_maps_still_apply_on_the_cheap_record_path(requests_mock: rm.Mocker) -> None:
    account = Account(requests_mock, [execution(1, T0, T0 + MIN)])
    account.result("ex-1", HEADERS, ROWS[:3])
    settings = config()
    settings["stream_maps"] = {STREAM: {"qty": None, "url_upper": "url.upper()"}}
    records = run_sync(make_tap(settings, clock=FakeClock())).records[STREAM]
    assert [r["url_upper"] for r in records] == [row[0].upper() for row in ROWS[:3]]
    assert all("qty" not in r for r in records)


NON_ASCII_ROWS = [[f"https://x/{n}", n, n % 2 == 0, f"Prïs € {n} 𝄞"] for n in range(40)]


def test_a_result_cut_inside_a_multi_byte_character_is_read_again(
    requests_mock: rm.Mocker,
) -> None:
    """A body that stops mid-way through a UTF-8 sequence is a cut body like any other:
    read again, rows not repeated, no UnicodeDecodeError ending the run."""
    headers = [*HEADERS, "label"]
    account = Account(requests_mock, [execution(1, T0, T0 + MIN)])
    account.result("ex-1", headers, NON_ASCII_ROWS)
    whole = json.dumps(
        {"headers": headers, "rows": NON_ASCII_ROWS, "totalRows": len(NON_ASCII_ROWS)},
        ensure_ascii=False,
    ).encode()
    cut = whole.index("€".encode(), len(whole) // 2) + 1  # one byte into a 3-byte character
    tap = make_tap(config(), clock=FakeClock())
    tap.streams  # noqa: B018 - discovery, against the whole body
    requests_mock.get(
        BASE + "executions/ex-1/result", [{"content": whole[:cut]}, {"content": whole}]
    )
    out = run_sync(tap)
    records = out.records[STREAM]
    assert [r["_row_index"] for r in records] == list(range(len(NON_ASCII_ROWS)))
    assert [r["label"] for r in records] == [row[3] for row in NON_ASCII_ROWS]


@pytest.mark.parametrize(
    ("body", "found"),
    [
        (b"{}", "found an object with none"),
        (b'{"error": "no result"}', "found an object with none"),
        (b"[]", "found a JSON array"),
        (b"<html><body>Service busy</body></html>", "found an HTML page"),
        (b"", "found an empty body"),
    ],
)
def test_a_result_of_the_wrong_shape_fails_naming_it(
    requests_mock: rm.Mocker, body: bytes, found: str
) -> None:
    """Valid JSON (or none) that is not the documented result object is never 0 rows and
    success: the execution's result fails, naming the platform, endpoint and what came."""
    account = Account(requests_mock, [execution(1, T0, T0 + MIN)])
    account.result("ex-1", HEADERS, ROWS)
    tap = make_tap(config(), clock=FakeClock())
    tap.streams  # noqa: B018 - discovery, against the whole body
    requests_mock.get(BASE + "executions/ex-1/result", content=body)
    with pytest.raises(SyncFailedError) as info:
        run_sync(tap)
    assert "Dexi: GET executions/ex-1/result: expected " in str(info.value)
    assert found in str(info.value)
