"""The command line as users and schedulers see it: exit codes, one-line errors, no secrets."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from dataplatforms_sandbox import CREDENTIALS
from tap_dataplatforms.core.errors import EXIT_CONFIG, EXIT_PARTIAL
from tests.sandbox_env import redivis_config, shared_sandbox


def run(
    tmp_path: Path, config: dict[str, Any], *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return subprocess.run(
        [sys.executable, "-m", "tap_dataplatforms.tap", "--config", str(path), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if "| ERROR" in line]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_sync_writes_records_and_state(tmp_path: Path) -> None:
    config = redivis_config(shared_sandbox(), organizations=["demo"], users=[])
    config["redivis"]["max_requests_per_second"] = 200
    result = run(tmp_path, config)
    assert result.returncode == 0, result.stderr
    messages = [json.loads(line) for line in result.stdout.splitlines()]
    types = Counter(m["type"] for m in messages)
    assert types["RECORD"] > 0
    assert types["SCHEMA"] == 3
    assert messages[-1]["type"] == "STATE"
    assert CREDENTIALS["redivis"]["token"] not in result.stdout + result.stderr


def test_unreachable_host_fails_fast_in_one_line(tmp_path: Path) -> None:
    config = redivis_config(shared_sandbox())
    config["redivis"]["api_url"] = f"http://127.0.0.1:{free_port()}/redivis/api/v1"
    result = run(tmp_path, config)
    assert result.returncode == EXIT_PARTIAL
    assert result.stdout == ""
    (line,) = error_lines(result)
    assert "Redivis: cannot reach http://127.0.0.1:" in line
    assert line.endswith("connection refused")
    assert "Traceback" not in result.stderr


def test_bad_token_fails_fast_in_one_line(tmp_path: Path) -> None:
    config = redivis_config(shared_sandbox(), token="wrong-token-123456")
    result = run(tmp_path, config)
    assert result.returncode == EXIT_CONFIG
    assert result.stdout == ""
    (line,) = error_lines(result)
    assert "Redivis: HTTP 401" in line
    assert "wrong-token-123456" not in result.stderr
    assert "Traceback" not in result.stderr


def test_failed_partition_ends_non_zero_after_delivering_the_rest(tmp_path: Path) -> None:
    sandbox = shared_sandbox()
    config = redivis_config(sandbox, organizations=["demo", "no_such_org"], users=[])
    result = run(tmp_path, config)
    assert result.returncode == EXIT_PARTIAL
    records = [json.loads(line) for line in result.stdout.splitlines() if '"RECORD"' in line]
    assert {r["stream"] for r in records} == {
        "redivis_datasets",
        "redivis_tables",
        "redivis_variables",
    }
    errors = "\n".join(error_lines(result))
    assert "1 partition(s) failed" in errors
    assert "owner=no_such_org" in errors
    assert "Traceback" not in result.stderr


def test_connection_test_flag(tmp_path: Path) -> None:
    config = redivis_config(shared_sandbox(), organizations=["demo"], users=[])
    result = run(tmp_path, config, "--test")
    assert result.returncode == 0, result.stderr
    assert '"RECORD"' in result.stdout
    # Each stream stops at its first record: a success, not "an unhandled error".
    assert error_lines(result) == []


METRICS_ON_LOGGING = """\
version: 1
disable_existing_loggers: false
loggers:
  singer_sdk.metrics:
    level: INFO
"""


def metric_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if "METRIC: " in line]


def test_metric_lines_are_off_by_default_and_on_with_the_documented_switches(
    tmp_path: Path,
) -> None:
    """Quiet for schedulers: a default sync logs its progress and run summary but no
    METRIC line; `metrics_log_level: INFO` or a SINGER_SDK_LOG_CONFIG file that sets the
    `singer_sdk.metrics` logger to INFO (the README's two switches) turn them on."""
    config = redivis_config(shared_sandbox(), organizations=["demo"], users=[])
    config["redivis"]["max_requests_per_second"] = 200
    default = run(tmp_path, config)
    assert default.returncode == 0, default.stderr[-1500:]
    assert metric_lines(default) == []
    assert "redivis_variables" in default.stderr.split("Run summary:")[1]

    by_setting = run(tmp_path, {**config, "metrics_log_level": "info"})
    assert by_setting.returncode == 0, by_setting.stderr[-1500:]
    kinds = {
        json.loads(line.split("METRIC: ", 1)[1])["metric"] for line in metric_lines(by_setting)
    }
    assert {"http_request_duration", "record_count"} <= kinds

    logging_file = tmp_path / "logging.yaml"
    logging_file.write_text(METRICS_ON_LOGGING)
    by_file = run(tmp_path, config, env={"SINGER_SDK_LOG_CONFIG": str(logging_file)})
    assert by_file.returncode == 0, by_file.stderr[-1500:]
    assert metric_lines(by_file)
