"""One settings object: the config parsed once into typed, frozen settings, defaults from
the declarations, and no module but the settings modules reading raw config keys."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from tap_dataplatforms.core import settings as core_settings
from tap_dataplatforms.core.config import COMMON_SETTINGS, check_fields
from tap_dataplatforms.core.errors import ConfigError
from tap_dataplatforms.core.partition import first_partition, in_partition, partition_of
from tap_dataplatforms.core.settings import (
    CommonSettings,
    Partition,
    PlatformSettings,
    Settings,
    parse,
)
from tap_dataplatforms.dexi.settings import DexiSettings
from tap_dataplatforms.invision.settings import InvisionSettings
from tap_dataplatforms.redivis.settings import RedivisSettings
from tap_dataplatforms.tap import PLATFORMS, TapDataPlatforms

PACKAGE = Path(core_settings.__file__).resolve().parents[1]
#: Where raw config keys may be read: the declarations and validation, and the parsing.
SETTINGS_MODULES = {PACKAGE / "core" / "config.py", PACKAGE / "core" / "settings.py"}


def _declared(props: Any) -> dict[str, Any]:
    return {p.name: p.to_dict()[p.name].get("default") for p in props}


def test_parsing_gives_typed_settings_with_the_declared_defaults() -> None:
    parsed = parse(
        {"redivis": {"token": "t-123456"}, "dexi": {"account_id": "a", "api_key": "k"}}, PLATFORMS
    )
    assert isinstance(parsed, Settings)
    common = parsed.common
    assert isinstance(common, CommonSettings)
    # Every shared setting's value is its declaration's default, typed.
    for name, default in _declared(COMMON_SETTINGS).items():
        assert getattr(common, name) == default, name
    assert common.max_concurrency == 4
    assert isinstance(common.max_concurrency, int)
    assert common.request_timeout_seconds == 300.0
    assert isinstance(common.request_timeout_seconds, float)
    assert common.partition is None
    assert common.mirroring
    # Each enabled platform's block, typed, with its declared defaults; others absent.
    assert set(parsed.platforms) == {"redivis", "dexi"}
    redivis = parsed.of(RedivisSettings, "redivis")
    spec = next(s for s in PLATFORMS if s.key == "redivis")
    for name, default in _declared(spec.settings).items():
        expected = "t-123456" if name == "token" else default
        assert getattr(redivis, name) == expected, name
    assert redivis.read_streams == 4
    assert redivis.max_requests_per_second == 16.0
    dexi = parsed.of(DexiSettings, "dexi")
    assert dexi.files_dir == "dexi-files"
    assert dexi.download_files is False
    assert dexi.api_url == "https://api.dexi.io/"
    assert dexi.run_ids is None
    with pytest.raises(TypeError):
        parsed.of(InvisionSettings, "redivis")


def test_given_values_win_and_the_settings_are_frozen() -> None:
    parsed = parse(
        {
            "max_concurrency": 2,
            "partition": {"index": 1, "count": 3},
            "invision": {
                "api_url": "https://host/invision",
                "api_key": "k-123456",
                "dataflow_ids": ["a", "b"],
                "poll_interval_seconds": 2,
            },
        },
        PLATFORMS,
    )
    assert parsed.common.max_concurrency == 2
    assert parsed.common.partition == Partition(index=1, count=3)
    assert not parsed.common.mirroring  # off under `partition` unless asked for
    # Unset, the METRIC level is left to a logging config (the tap's metrics_level).
    assert parsed.common.metrics_log_level is None
    invision = parsed.of(InvisionSettings, "invision")
    assert invision.dataflow_ids == ("a", "b")
    assert invision.poll_interval_seconds == 2.0
    assert invision.await_timeout_seconds == 3600
    with pytest.raises(dataclasses.FrozenInstanceError):
        invision.api_key = "other"  # type: ignore[misc]
    # The typed partition splits by the hash of each key.
    keys = [f"key-{i}" for i in range(50)]
    assert [in_partition(parsed.common.partition, k) for k in keys] == [
        partition_of(k, 3) == 1 for k in keys
    ]
    assert not first_partition(parsed.common.partition)


def test_a_missing_required_setting_is_one_config_line() -> None:
    with pytest.raises(ConfigError, match=r"^missing setting reinfer\.token$"):
        parse({"reinfer": {"api_url": "https://acme.reinfer.io"}}, PLATFORMS)


def test_every_settings_class_names_exactly_its_declarations() -> None:
    for spec in PLATFORMS:
        assert issubclass(spec.settings_class, PlatformSettings)
        check_fields(spec.settings_class, spec.settings)

    @dataclasses.dataclass(frozen=True)
    class Drifted(PlatformSettings):
        undeclared: str

    with pytest.raises(TypeError, match="undeclared"):
        check_fields(Drifted, PLATFORMS[0].settings)
    # A platform whose typed block drifts from its declarations fails where it is declared.
    with pytest.raises(TypeError, match=r"Drifted does not match.*undeclared \['undeclared'\]"):
        dataclasses.replace(PLATFORMS[0], settings_class=Drifted)


def test_the_tap_parses_once_at_start_up() -> None:
    tap = TapDataPlatforms(
        config={"redivis": {"token": "t-123456"}, "max_retries": 0}, validate_config=True
    )
    parsed = tap.settings_object
    assert tap.runtime.settings is parsed
    assert parsed.common.max_retries == 0  # a valid 0 is 0, not the default
    stream = tap.streams["redivis_datasets"]
    assert stream.settings is parsed.platforms["redivis"]  # type: ignore[attr-defined]
    assert stream.common is parsed.common  # type: ignore[attr-defined]


def _raw_config_reads(path: Path) -> list[str]:
    """``x.config[...]``, ``x.config.get(...)`` (and ``_config``) in one module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        target = None
        if isinstance(node, ast.Subscript):
            target = node.value
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
        ):
            target = node.func.value
        if isinstance(target, ast.Attribute) and target.attr in {"config", "_config"}:
            found.append(f"{path.name}:{node.lineno}")
    return found


def test_no_module_outside_the_settings_modules_reads_raw_config() -> None:
    reads = [
        hit
        for path in sorted(PACKAGE.rglob("*.py"))
        if path not in SETTINGS_MODULES
        for hit in [f"{path.relative_to(PACKAGE)} {h}" for h in _raw_config_reads(path)]
    ]
    assert reads == [], "read typed settings (self.common, self.settings) instead"


def test_the_check_finds_a_raw_read(tmp_path: Path) -> None:
    module = tmp_path / "probe.py"
    module.write_text(
        "def f(self, tap):\n"
        '    return self.config.get("max_concurrency") or 1\n'
        "def g(tap):\n"
        '    return tap.config["partition"]\n'
    )
    assert sorted(_raw_config_reads(module)) == ["probe.py:2", "probe.py:4"]
