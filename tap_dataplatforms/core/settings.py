"""The configuration, parsed once into typed, frozen settings that code reads as attributes.

The declarations (``core.config.COMMON_SETTINGS``, each platform's ``SETTINGS``) stay the
one source of names, types and defaults: ``--about``, ``meltano.yml`` and the README are
made from them, and a dataclass here (or in a platform's ``settings.py``) only names the
same fields, with the Python type code reads. ``parse`` fills every field from the config,
or from its declared default when the config leaves it out; a dataclass whose fields are
not exactly its declarations fails at import, so the two cannot drift.

The tap parses once, after validation (``TapDataPlatforms._validate_config``), so that a bad
config still ends in one line naming the setting before anything else runs; streams read
``self.common`` and ``self.settings`` (their platform's block), never the raw config.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from singer_sdk import typing as th

from tap_dataplatforms.core.config import (
    COMMON_SETTINGS,
    PlatformSpec,
    check_fields,
    declared_defaults,
)
from tap_dataplatforms.core.errors import ConfigError
from tap_dataplatforms.core.versions import PROPERTY as VERSIONS_PROPERTY

T = TypeVar("T")


def _convert(hint: Any, value: Any, where: str) -> Any:
    """``value`` as the type ``hint`` says (the schema already checked its JSON type)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _convert(options[0], value, where)
    if value is None:
        raise ConfigError(f"missing setting {where}")
    if origin is tuple:
        (item, *_) = typing.get_args(hint)
        return tuple(_convert(item, v, where) for v in value)
    if origin in (Mapping, dict):
        return types.MappingProxyType(dict(value))
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return parse_fields(hint, value, where)
    if hint is bool:
        return bool(value)
    if hint in (int, float, str):
        return hint(value)
    return value


def parse_fields(cls: type[T], raw: Mapping[str, Any], where: str = "", **defaults: Any) -> T:
    """An instance of the dataclass ``cls`` from ``raw``, ``defaults`` where it has nothing."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        value = raw.get(f.name)
        if value is None:
            value = defaults.get(f.name)
        values[f.name] = _convert(hints[f.name], value, f"{where}{f.name}")
    return cls(**values)


@dataclass(frozen=True)
class Partition:
    """``partition``: this process extracts the parents that hash to ``index`` of ``count``."""

    index: int
    count: int


@dataclass(frozen=True)
class CommonSettings:
    """The settings every platform shares (``COMMON_SETTINGS``, plus the SDK's switch for
    table versions, whose default depends on ``partition``: see ``mirroring``)."""

    start_date: str | None
    lookback_seconds: int
    max_concurrency: int
    rate_limit_backend: str
    partition: Partition | None
    run_summary_path: str | None
    request_timeout_seconds: float
    verify_tls: bool
    metrics_log_level: str | None
    max_retries: int
    emit_activate_version_messages: bool | None

    @property
    def mirroring(self) -> bool:
        """Whether full-table streams are versioned in this run (core/versions.py)."""
        if self.emit_activate_version_messages is None:
            return self.partition is None
        return self.emit_activate_version_messages


COMMON_DECLARATIONS: tuple[th.Property, ...] = (*COMMON_SETTINGS, VERSIONS_PROPERTY)
check_fields(CommonSettings, COMMON_DECLARATIONS)


@dataclass(frozen=True)
class PlatformSettings:
    """Base of a platform's settings block; each platform declares its own subclass."""

    api_url: str
    max_requests_per_second: float


@dataclass(frozen=True)
class Settings:
    """The whole configuration: the shared settings and each enabled platform's block."""

    common: CommonSettings
    #: Platform key -> its settings, for the platforms whose block is present.
    platforms: Mapping[str, PlatformSettings] = field(default_factory=dict)

    def platform(self, key: str) -> PlatformSettings:
        return self.platforms[key]

    def of(self, cls: type[T], key: str) -> T:
        """The block of platform ``key``, typed as its settings class ``cls``."""
        block = self.platforms[key]
        if not isinstance(block, cls):
            raise TypeError(f"{key} settings are {type(block).__name__}, not {cls.__name__}")
        return block


def parse(config: Mapping[str, Any], platforms: Iterable[PlatformSpec]) -> Settings:
    """The typed settings of ``config`` (already validated), declared defaults applied."""
    common = parse_fields(CommonSettings, config, "", **declared_defaults(COMMON_DECLARATIONS))
    blocks: dict[str, PlatformSettings] = {}
    for spec in platforms:
        block = config.get(spec.key)
        if block is None:
            continue
        blocks[spec.key] = parse_fields(
            spec.settings_class, block, f"{spec.key}.", **declared_defaults(spec.settings)
        )
    return Settings(common, types.MappingProxyType(blocks))


def of_tap(tap: Any) -> Settings:
    """The settings of a running tap (streams and platform helpers reach them so)."""
    settings = tap.runtime.settings
    assert isinstance(settings, Settings)
    return settings
