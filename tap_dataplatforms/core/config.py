"""Settings: the shared ones, each platform's block, defaults and one-line validation."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from jsonschema import Draft7Validator
from singer_sdk import typing as th

from tap_dataplatforms.core.budget import parse_backend
from tap_dataplatforms.core.errors import ConfigError
from tap_dataplatforms.core.timestamps import parse_datetime

if TYPE_CHECKING:
    from singer_sdk import Stream, Tap

    from tap_dataplatforms.core.settings import PlatformSettings

#: Values of ``metrics_log_level``, Python's level names (the SDK logs METRIC lines at INFO).
METRICS_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

COMMON_SETTINGS: list[th.Property] = [
    th.Property(
        "start_date",
        th.DateTimeType,
        description=(
            "Earliest timestamp for incremental streams (RFC 3339). Without it a first sync "
            "reads everything, except InVision's execution log, which goes back 30 days."
        ),
    ),
    th.Property(
        "lookback_seconds",
        th.IntegerType(minimum=0),
        default=0,
        description="Re-read this many seconds before each bookmark, for late-arriving data.",
    ),
    th.Property(
        "max_concurrency",
        th.IntegerType(minimum=1),
        default=4,
        description="Parallel requests for independent partitions, always inside the budget.",
    ),
    th.Property(
        "rate_limit_backend",
        th.StringType,
        default="memory",
        description=(
            "Where request budgets live: 'memory', 'sqlite:///PATH' (several processes on "
            "one host) or 'redis://HOST:PORT/DB' (several hosts)."
        ),
    ),
    th.Property(
        "partition",
        th.ObjectType(
            th.Property("index", th.IntegerType(minimum=0), required=True),
            th.Property("count", th.IntegerType(minimum=1), required=True),
            additional_properties=False,
        ),
        description=(
            "Extract only the parents (runs, sources, workspaces, tables, data flows) that "
            "hash to partition `index` of `count`, so n processes extract what one would."
        ),
    ),
    th.Property(
        "run_summary_path",
        th.StringType,
        description=(
            "Also write the run summary (per stream: records, requests, retries, 429s, "
            "budget waits, bookmarks, failed partitions) to this JSON file."
        ),
    ),
    th.Property(
        "request_timeout_seconds",
        th.NumberType(exclusive_minimum=0),
        default=300,
        description="Read timeout of one HTTP request.",
    ),
    th.Property(
        "verify_tls",
        th.BooleanType,
        default=True,
        description=(
            "Verify the platforms' TLS certificates. Turn off only for a test server with a "
            "self-signed certificate: the tap then warns once."
        ),
    ),
    th.Property(
        "metrics_log_level",
        th.StringType(allowed_values=list(METRICS_LOG_LEVELS)),
        # No declared default: unset, the level a logging config (SINGER_SDK_LOG_CONFIG)
        # gives the METRIC logger is kept, else WARNING (tap.metrics_level).
        description=(
            "Level of the SDK's METRIC lines (logger `singer_sdk.metrics`), which are logged "
            "at INFO: the default WARNING keeps them out of the log; INFO (or DEBUG) turns "
            "them on."
        ),
    ),
    th.Property(
        "max_retries",
        th.IntegerType(minimum=0),
        default=7,
        description=(
            "Retries of a failed request (5xx, 408, timeouts, dropped connections, broken "
            "bodies) before its partition fails; waits for 429 are not counted."
        ),
    ),
]


def url_setting(default: str | None, example: str) -> th.Property:
    return th.Property(
        "api_url",
        th.StringType,
        default=default,
        description=f"Base URL of the API, e.g. `{example}`.",
    )


def budget_setting(default: float, meaning: str) -> th.Property:
    return th.Property(
        "max_requests_per_second",
        th.NumberType(exclusive_minimum=0),
        default=default,
        description=f"Request budget, enforced before sending: {meaning}.",
    )


def declared_defaults(declarations: Iterable[th.Property]) -> dict[str, Any]:
    """Name -> declared default (``None`` where a setting has none)."""
    return {p.name: p.to_dict()[p.name].get("default") for p in declarations}


def check_fields(cls: type[Any], declarations: Iterable[th.Property]) -> None:
    """A settings dataclass names exactly the declared settings (raises at import)."""
    declared = {p.name for p in declarations}
    named = {f.name for f in dataclasses.fields(cls)}
    if declared != named:
        raise TypeError(
            f"{cls.__name__} does not match its declarations: "
            f"undeclared {sorted(named - declared)}, missing {sorted(declared - named)}"
        )


@dataclass(frozen=True)
class PlatformSpec:
    """What the tap needs to know of a platform: its settings block and its streams."""

    key: str
    title: str
    settings: tuple[th.Property, ...]
    #: The typed form of the block (core/settings.py), naming exactly ``settings``.
    settings_class: type[PlatformSettings]
    # The block is complete when every setting of at least one group is set.
    credential_groups: tuple[tuple[str, ...], ...]
    #: The streams whose name and schema need no request (none of the dynamic ones): what
    #: discovery lists, without credentials, when no platform is configured, and the
    #: platform's streams unless ``build_streams`` makes them.
    streams: tuple[type[Stream], ...] = ()
    #: The streams of a configured platform where some are made from its data (read at
    #: discovery); without it, ``streams``.
    build_streams: Callable[[Tap], list[Stream]] | None = None
    # One request that proves the credentials and the host, before any record.
    check: Callable[[Tap], None] | None = None
    #: Rewrites, in place, bookmarks an earlier release wrote in another form.
    migrate_state: Callable[[dict[str, Any]], None] | None = None

    def __post_init__(self) -> None:
        check_fields(self.settings_class, self.settings)

    @property
    def block(self) -> th.Property:
        return th.Property(
            self.key,
            th.ObjectType(*self.settings, additional_properties=False),
            description=f"{self.title}: the platform is enabled when this block is present.",
        )

    def static_streams(self, tap: Tap) -> list[Stream]:
        return [stream_type(tap) for stream_type in self.streams]

    def configured_streams(self, tap: Tap) -> list[Stream]:
        """The streams of the platform, its block being configured."""
        return self.build_streams(tap) if self.build_streams else self.static_streams(tap)

    @cached_property
    def secret_names(self) -> tuple[str, ...]:
        # Worked out once: every request's budget lookup asks for it.
        return tuple(p.name for p in self.settings if p.to_dict()[p.name].get("secret"))

    def defaults(self) -> dict[str, Any]:
        """The settings that declare a default, with it."""
        return {k: v for k, v in declared_defaults(self.settings).items() if v is not None}


def resolved_block(spec: PlatformSpec, config: Mapping[str, Any]) -> dict[str, Any] | None:
    """A platform's settings with defaults applied, or ``None`` when it is not enabled."""
    block = config.get(spec.key)
    if block is None:
        return None
    return {**spec.defaults(), **{k: v for k, v in block.items() if v is not None}}


def secret_values(config: Mapping[str, Any], platforms: Iterable[PlatformSpec]) -> list[str]:
    """Every secret the raw config holds, read before validation so that no message, not
    even one about a broken config, can show one: the platforms' secret settings and a
    password in ``rate_limit_backend`` (``redis://user:password@host``)."""
    secrets: list[str] = []
    backend = config.get("rate_limit_backend")
    if isinstance(backend, str) and "@" in backend:
        with contextlib.suppress(ValueError):
            secrets.append(str(urlsplit(backend).password or ""))
    for spec in platforms:
        block = config.get(spec.key)
        if isinstance(block, dict):
            secrets += [str(block[name]) for name in spec.secret_names if block.get(name)]
    return [s for s in secrets if s]


def normalize(config: dict[str, Any], schema: dict[str, Any]) -> None:
    """What Meltano and users write loosely, in place, before validation: numbers as text
    (``coerce_numbers``) and ``metrics_log_level`` in any case (`info` is INFO)."""
    coerce_numbers(config, schema)
    level = config.get("metrics_log_level")
    if isinstance(level, str):
        config["metrics_log_level"] = level.upper()


def _setting_path(path: Iterable[Any]) -> str:
    return ".".join(str(p) for p in path)


def _schema_error(error: Any) -> str:
    path = _setting_path(error.absolute_path)
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        where = f"{path}." if path else ""
        return f"unknown setting {', '.join(where + e for e in extra)}"
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        where = f"{path}." if path else ""
        return f"missing setting {where}{missing}"
    if error.validator == "type":
        expected = error.validator_value
        if isinstance(expected, list):
            expected = " or ".join(t for t in expected if t != "null")
        return f"setting {path}: expected {expected}, got {type(error.instance).__name__}"
    return f"setting {path}: {error.message}"


def _is_datetime(value: str) -> bool:
    # The schema's "format: date-time" is not enforced by the validator; without this
    # check a bad start_date would only fail once the first incremental stream starts.
    try:
        parse_datetime(value)
    except ValueError:
        return False
    return True


def _is_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in {"http", "https"} and bool(parts.hostname)


def validate(
    config: Mapping[str, Any],
    schema: dict[str, Any],
    platforms: Iterable[PlatformSpec],
    *,
    require_platform: bool = True,
) -> list[str]:
    """Every problem of ``config``, each one line naming the setting, before any request.

    ``require_platform=False`` (discovery) accepts a configuration without any platform.
    """
    errors = [
        _schema_error(e)
        for e in sorted(Draft7Validator(schema).iter_errors(dict(config)), key=lambda e: e.path)
    ]
    if errors:
        return errors
    platforms = list(platforms)
    enabled = [p for p in platforms if config.get(p.key) is not None]
    if not enabled and require_platform:
        names = ", ".join(p.key for p in platforms)
        return [f"no platform configured: add a block for at least one of {names}"]
    for spec in enabled:
        block = resolved_block(spec, config) or {}
        groups = spec.credential_groups
        if not any(all(block.get(name) for name in group) for group in groups):
            group = min(groups, key=lambda g: sum(1 for n in g if not block.get(n)))
            missing = [f"{spec.key}.{n}" for n in group if not block.get(n)]
            errors.append(f"missing setting {', '.join(missing)}: {spec.title} needs it")
        url = block.get("api_url")
        if url is not None and not _is_url(str(url)):
            errors.append(f"setting {spec.key}.api_url: not an http(s) URL")
    start = config.get("start_date")
    if start is not None and not _is_datetime(str(start)):
        errors.append("setting start_date: not an RFC 3339 date-time, e.g. 2024-05-01T00:00:00Z")
    partition = config.get("partition")
    if partition and partition["index"] >= partition["count"]:
        errors.append("setting partition.index: must be smaller than partition.count")
    backend = config.get("rate_limit_backend")
    if backend is not None:
        try:
            parse_backend(str(backend))
        except ConfigError as exc:
            errors.append(str(exc))
    return errors


def coerce_numbers(config: dict[str, Any], schema: dict[str, Any]) -> None:
    """Number settings given as text become numbers, in place.

    Meltano passes a setting declared ``kind: string`` as text; number settings are
    declared so (``kind: decimal`` read from an environment variable crashes Meltano 4.4
    with "Decimal is not JSON serializable"), and are read here as the numbers they are.
    Text that is no number is left for validation to name.
    """
    for name, prop in (schema.get("properties") or {}).items():
        value = config.get(name)
        types = prop.get("type", [])
        types = [types] if isinstance(types, str) else list(types)
        if isinstance(value, dict) and "object" in types:
            coerce_numbers(value, prop)
        elif isinstance(value, str) and ("number" in types or "integer" in types):
            text = value.strip()
            try:
                number = float(text)
            except ValueError:
                continue
            if "integer" in types and number.is_integer() and "." not in text:
                config[name] = int(number)
            elif "number" in types:
                config[name] = number
