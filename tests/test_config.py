"""Invalid configuration fails before any request: one line naming the setting."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from singer_sdk.metrics import METRICS_LOGGER_NAME

from tap_dataplatforms.core.errors import ConfigError
from tap_dataplatforms.core.redact import MASK, redact
from tap_dataplatforms.tap import TapDataPlatforms

GOOD_REDIVIS = {"token": "tok-123456", "organizations": ["demo"]}


def run_tap(tmp_path: Path, config: object, *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return subprocess.run(
        [sys.executable, "-m", "tap_dataplatforms.tap", "--config", str(path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


CASES = [
    ({"redivis": {"organizations": ["demo"]}}, "missing setting redivis.token"),
    ({"dexi": {"account_id": "a"}}, "missing setting dexi.api_key"),
    ({"reinfer": {"token": "tok-123456"}}, "missing setting reinfer.api_url"),
    (
        {"datalinx": {"api_url": "https://x.datalinx.ai/api", "email": "a@b.c"}},
        "missing setting datalinx.api_key",
    ),
    ({"redivis": {**GOOD_REDIVIS, "read_streams": "four"}}, "setting redivis.read_streams"),
    ({"redivis": {**GOOD_REDIVIS, "api_url": "ftp://x"}}, "setting redivis.api_url"),
    ({"redivis": {**GOOD_REDIVIS, "api_url": "not a url"}}, "setting redivis.api_url"),
    ({"redivis": GOOD_REDIVIS, "dexy": {"api_key": "k"}}, "unknown setting dexy"),
    ({"redivis": {**GOOD_REDIVIS, "tokn": "x"}}, "unknown setting redivis.tokn"),
    ({"redivis": {**GOOD_REDIVIS, "max_requests_per_second": -1}}, "max_requests_per_second"),
    ({"redivis": GOOD_REDIVIS, "max_concurrency": 0}, "setting max_concurrency"),
    ({"redivis": GOOD_REDIVIS, "partition": {"index": 2, "count": 2}}, "partition.index"),
    (
        {"redivis": GOOD_REDIVIS, "rate_limit_backend": "redis://:pw@127.0.0.1:1/0"},
        "setting rate_limit_backend: cannot reach redis at 127.0.0.1:1",
    ),
    (
        {"redivis": GOOD_REDIVIS, "rate_limit_backend": "mongodb://127.0.0.1/0"},
        "setting rate_limit_backend: expected",
    ),
    ({}, "no platform configured"),
]


@pytest.mark.parametrize(("config", "expected"), CASES)
def test_invalid_config_is_one_line_naming_the_setting(
    tmp_path: Path, config: dict[str, object], expected: str
) -> None:
    result = run_tap(tmp_path, config)
    assert result.returncode != 0
    assert result.stdout == ""  # nothing was extracted
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1, result.stderr
    assert expected in errors[0]
    assert "Traceback" not in result.stderr
    assert "tok-123456" not in result.stderr


def test_discover_validates_too(tmp_path: Path) -> None:
    result = run_tap(tmp_path, {"redivis": {"users": ["x"]}}, "--discover")
    assert result.returncode != 0
    assert "missing setting redivis.token" in result.stderr


def test_about_lists_every_contract_setting() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tap_dataplatforms.tap", "--about", "--format=markdown"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    contract = Path(__file__).resolve().parents[1].parent / "shared" / "docs" / "contract.md"
    names = expected_settings(contract)
    for name in names:
        assert f"| {name} |" in result.stdout, name


def expected_settings(contract: Path) -> list[str]:
    """Setting names from the contract's table, or the known list when shared/ is absent."""
    if contract.exists():
        names = []
        in_table = False
        for line in contract.read_text().splitlines():
            if line.startswith("| setting |"):
                in_table = True
                continue
            if in_table and not line.startswith("|"):
                break
            if in_table and line.startswith("| `"):
                cell = line.split("|")[1]
                names += [part.strip(" `") for part in cell.split("/")]
        assert len(names) > 30
        return names
    return [
        f"{block}.{name}"
        for block, fields in TapDataPlatforms.config_jsonschema["properties"].items()
        if "properties" in fields
        for name in fields["properties"]
    ]


def test_secrets_are_declared_secret() -> None:
    props = TapDataPlatforms.config_jsonschema["properties"]
    secrets = {
        f"{block}.{name}"
        for block, spec in props.items()
        for name, field in spec.get("properties", {}).items()
        if field.get("secret")
    }
    assert secrets == {
        "dexi.api_key",
        "reinfer.token",
        "redivis.token",
        "invision.api_key",
        "invision.monitoring_api_key",
        "invision.data_api_key",
        "datalinx.api_key",
        "datalinx.password",
    }


def test_a_redis_password_in_the_backend_url_is_masked_like_any_secret() -> None:
    config = {
        "redivis": {"token": "tok-redivis-123"},
        "rate_limit_backend": "redis://user:hunter2-backend@127.0.0.1:1/0",
    }
    with pytest.raises(ConfigError) as failed:
        TapDataPlatforms(config=config)
    assert "hunter2-backend" not in str(failed.value)
    # Registered before the backend is reached, so any later log line is masked too.
    assert redact("connecting with hunter2-backend failed") == f"connecting with {MASK} failed"


def test_metric_lines_follow_each_taps_setting_and_default_to_off() -> None:
    """`metrics_log_level` (any case) sets the METRIC logger; a later tap of the same
    process without it is quiet again, and a level a logging config gave is kept."""
    metrics = logging.getLogger(METRICS_LOGGER_NAME)
    redivis = {"redivis": {"api_url": "https://redivis.test/api/v1", "token": "tok-level-1"}}
    TapDataPlatforms(config={**redivis, "metrics_log_level": "info"}, parse_env_config=False)
    assert metrics.level == logging.INFO
    TapDataPlatforms(config=redivis, parse_env_config=False)
    assert metrics.level == logging.WARNING
    metrics.setLevel(logging.DEBUG)  # as SINGER_SDK_LOG_CONFIG would
    try:
        TapDataPlatforms(config=redivis, parse_env_config=False)
        assert metrics.level == logging.DEBUG
    finally:
        metrics.setLevel(logging.WARNING)
    with pytest.raises(ConfigError, match="metrics_log_level"):
        TapDataPlatforms(config={**redivis, "metrics_log_level": "LOUD"}, parse_env_config=False)


def test_discovery_without_a_platform_leaves_later_taps_of_the_process_strict(
    tmp_path: Path,
) -> None:
    """``--discover`` lists the static streams without any platform; it is that one tap's
    mode, so a sync later in the same process still needs a platform."""
    path = tmp_path / "config.json"
    path.write_text("{}")
    result = CliRunner().invoke(TapDataPlatforms.cli, ["--config", str(path), "--discover"])
    assert result.exit_code == 0, result.output
    assert '"dexi_runs"' in result.stdout
    with pytest.raises(ConfigError, match="no platform configured"):
        TapDataPlatforms(config={}, parse_env_config=False)
