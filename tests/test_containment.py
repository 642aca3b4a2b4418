"""One failing platform is contained and loud; exit codes tell schedulers what failed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dataplatforms_sandbox import CREDENTIALS, Sandbox
from tap_dataplatforms.core.errors import EXIT_CONFIG, EXIT_PARTIAL
from tests.sandbox_env import ROOMY_LIMITS


@pytest.fixture
def sandbox() -> Any:
    sb = Sandbox(seed=1, scale=1, limits=ROOMY_LIMITS).start()
    yield sb
    sb.stop()


def config(sb: Sandbox, invision_key: str | None = None) -> dict[str, Any]:
    return {
        "redivis": {
            "api_url": sb.base_url("redivis"),
            "token": CREDENTIALS["redivis"]["token"],
            "organizations": ["demo"],
            "users": [],
            "max_requests_per_second": 200,
        },
        "invision": {
            "api_url": sb.base_url("invision"),
            "api_key": invision_key or CREDENTIALS["invision"]["api_key"],
            "max_requests_per_second": 200,
        },
    }


def run(tmp_path: Path, cfg: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return subprocess.run(
        [sys.executable, "-m", "tap_dataplatforms.tap", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def outcome(result: subprocess.CompletedProcess[str]) -> tuple[set[str], dict[str, Any], str]:
    messages = [json.loads(line) for line in result.stdout.splitlines()]
    streams = {m["stream"] for m in messages if m["type"] == "RECORD"}
    states = [m["value"] for m in messages if m["type"] == "STATE"]
    errors = "\n".join(line for line in result.stderr.splitlines() if "| ERROR" in line)
    return streams, states[-1] if states else {}, errors


def test_platform_failing_its_check_with_500_does_not_stop_the_others(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    # InVision's monitoring API keeps answering 500, through every retry.
    sandbox.force("invision", status=500, count=50, delay=0, path_contains="monitoring")
    result = run(tmp_path, config(sandbox))
    assert result.returncode == EXIT_PARTIAL, result.stderr[-2000:]
    streams, state, errors = outcome(result)
    assert streams == {"redivis_datasets", "redivis_tables", "redivis_variables"}
    assert "redivis_datasets" in state["bookmarks"]
    assert "InVision" in errors
    assert "invision_execution_log" in errors
    assert "HTTP 500" in errors
    assert "Traceback" not in result.stderr


def test_the_default_sandboxs_broken_invision_object_fails_alone(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """The default installation has a data object that always answers 500 (its view reads
    a dropped table; no knob): its stream fails, named, and everything else is written."""
    (broken,) = sandbox.invision.broken
    cfg = config(sandbox)
    cfg["invision"]["tables"] = ["GL_Actuals", broken]
    cfg["max_retries"] = 1  # two tries: the answer is the same every time
    result = run(tmp_path, cfg)
    assert result.returncode == EXIT_PARTIAL, result.stderr[-2000:]
    streams, state, errors = outcome(result)
    assert {"redivis_datasets", "redivis_tables", "redivis_variables"} <= streams
    assert {"invision_execution_log", "invision_table__gl_actuals"} <= streams
    assert "invision_table__forecast_view" not in streams
    assert {"redivis_datasets", "invision_execution_log"} <= set(state["bookmarks"])
    assert "invision_table__forecast_view" in errors
    assert "HTTP 500" in errors
    assert "Traceback" not in result.stderr


def test_platform_refusing_its_key_is_a_credentials_failure_after_the_rest(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.force("invision", status=401, count=50, delay=0, path_contains="monitoring")
    result = run(tmp_path, config(sandbox, invision_key="wrong-key-0123456789"))
    assert result.returncode == EXIT_CONFIG, result.stderr[-2000:]
    streams, state, errors = outcome(result)
    assert streams == {"redivis_datasets", "redivis_tables", "redivis_variables"}
    assert "redivis_variables" in state["bookmarks"]
    assert "InVision" in errors
    assert "HTTP 401" in errors
    assert "wrong-key-0123456789" not in result.stderr + result.stdout
