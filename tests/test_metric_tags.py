"""The request-duration metric carries a platform's extra tags (core hook)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import requests
import requests_mock as rm

from tap_dataplatforms.core.http import PlatformStream
from tests.helpers import FakeClock, make_tap, run_sync

BASE = "https://redivis.test/api/v1"


def test_request_metric_tags_reach_the_duration_metric(
    requests_mock: rm.Mocker, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def tags(self: PlatformStream, response: requests.Response) -> dict[str, Any]:
        return {"server_header": response.headers.get("X-Test-Timing")}

    monkeypatch.setattr(PlatformStream, "request_metric_tags", tags)
    requests_mock.get(
        f"{BASE}/organizations/demo/datasets",
        json={"kind": "list", "nextPageToken": None, "results": []},
        headers={"X-Test-Timing": "12.5"},
    )
    config = {
        "metrics_log_level": "INFO",  # METRIC lines are off by default
        "redivis": {"api_url": BASE, "token": "tok-metric-1", "organizations": ["demo"]},
    }
    with caplog.at_level(logging.INFO, logger="singer_sdk.metrics"):
        run_sync(make_tap(config, clock=FakeClock()))
    points = [
        json.loads(r.getMessage().split("METRIC: ", 1)[1])
        for r in caplog.records
        if "http_request_duration" in r.getMessage()
    ]
    assert points
    assert all(p["tags"]["server_header"] == "12.5" for p in points)
