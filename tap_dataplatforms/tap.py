"""TapDataPlatforms: one Singer tap for five data-platform APIs."""

from __future__ import annotations

import copy
import logging
import sys
from functools import cached_property
from typing import Any

import click
from singer_sdk import Stream
from singer_sdk import typing as th
from singer_sdk.helpers.capabilities import PluginCapabilities, TapCapabilities
from singer_sdk.metrics import METRICS_LOGGER_NAME
from singer_sdk.singerlib import StateMessage
from singer_sdk.tap_base import CliTestOptionValue

from tap_dataplatforms import datalinx, dexi, invision, redivis, reinfer
from tap_dataplatforms.core import config as settings
from tap_dataplatforms.core import inputs, readahead, summary, versions
from tap_dataplatforms.core.errors import (
    EXIT_INTERNAL,
    ConfigError,
    PlatformAuthError,
    PlatformUnavailableError,
    SyncFailedError,
    TapDataPlatformsError,
)
from tap_dataplatforms.core.records import MessageWriter, tune_garbage_collection
from tap_dataplatforms.core.redact import install_log_redaction, register_secret
from tap_dataplatforms.core.runtime import Runtime
from tap_dataplatforms.core.sdk import SDKTap
from tap_dataplatforms.core.settings import Settings, parse

PLATFORMS: tuple[settings.PlatformSpec, ...] = (
    dexi.PLATFORM,
    reinfer.PLATFORM,
    redivis.PLATFORM,
    invision.PLATFORM,
    datalinx.PLATFORM,
)


#: The level the tap last gave the METRIC logger: a later tap of the same process tells
#: it apart from a level a logging config gave.
_metrics_level_set: int | None = None


def metrics_level(setting: str | None, configured: int) -> int:
    """The METRIC logger's level: ``metrics_log_level`` when set; else a level a logging
    config (``SINGER_SDK_LOG_CONFIG``) gave the ``singer_sdk.metrics`` logger; else
    WARNING. The SDK logs every METRIC line at INFO, one per request and partition, which
    a scheduled run's log does not need: they are off unless asked for."""
    global _metrics_level_set
    if setting is not None:
        level = logging.getLevelName(setting.upper())
    elif configured not in (logging.NOTSET, _metrics_level_set):
        level = configured
    else:
        level = logging.WARNING
    _metrics_level_set = level
    return level


class TapDataPlatforms(SDKTap):
    """Extracts Dexi.io, Re:infer, Redivis, Profitbase InVision and Datalinx AI."""

    name = "tap-dataplatforms"
    # msgspec encoding, flushed at each STATE/SCHEMA rather than after every record.
    message_writer_class = MessageWriter
    package_name = "tap-dataplatforms"
    dynamic_catalog = True
    capabilities = [
        TapCapabilities.CATALOG,
        TapCapabilities.STATE,
        TapCapabilities.DISCOVER,
        TapCapabilities.TEST,
        TapCapabilities.ACTIVATE_VERSION,
        PluginCapabilities.ABOUT,
        PluginCapabilities.STREAM_MAPS,
        PluginCapabilities.FLATTENING,
        PluginCapabilities.BATCH,
        PluginCapabilities.STRUCTURED_LOGGING,
    ]
    config_jsonschema = th.PropertiesList(
        *settings.COMMON_SETTINGS, *(spec.block for spec in PLATFORMS)
    ).to_dict()

    def __init__(self, *args: Any, listing_only: bool = False, **kwargs: Any) -> None:
        #: Discovery (``--discover``): without any platform configured, the catalog lists
        #: every platform's static streams (``meltano select --list`` needs no
        #: credentials); a sync without a platform stays a configuration error.
        self.listing_only = listing_only
        install_log_redaction()
        # The SDK sets the METRIC logger to LOGLEVEL here, over a level given to it by
        # SINGER_SDK_LOG_CONFIG (or a test's caplog): that one is kept, see below.
        metrics = logging.getLogger(METRICS_LOGGER_NAME)
        configured = metrics.level
        super().__init__(*args, **kwargs)
        common = self.settings_object.common
        readahead.configure(common.max_concurrency)  # the one pool's size
        metrics.setLevel(metrics_level(common.metrics_log_level, configured))

    def load_state(self, state: dict[str, Any]) -> None:
        """Bookmarks written by an earlier release are read in their current form."""
        for spec in PLATFORMS:
            if spec.migrate_state is not None:
                spec.migrate_state(state)
        super().load_state(state)

    # -- configuration ----------------------------------------------------------------

    @classmethod
    def append_builtin_config(cls, config_jsonschema: dict[str, Any]) -> None:
        """The SDK's built-in settings, and its standard switch for table versions (with
        the tap's default: on, off under ``partition``; see core/versions.py)."""
        super().append_builtin_config(config_jsonschema)
        config_jsonschema["properties"].setdefault(
            versions.SETTING, versions.PROPERTY.to_dict()[versions.SETTING]
        )

    def validate_settings(self, *, raise_errors: bool = True) -> list[str]:
        """Validate with one line per problem, each naming the setting."""
        self._register_secrets()
        schema = copy.deepcopy(self.config_jsonschema)
        self.append_builtin_config(schema)
        settings.normalize(self.mutable_config, schema)
        schema["additionalProperties"] = False
        errors = settings.validate(
            self.config, schema, PLATFORMS, require_platform=not self.listing_only
        )
        if not errors:
            # Parsed once, here: the typed settings every stream reads.
            self.__dict__.pop("settings_object", None)
            try:
                self.settings_object  # noqa: B018
            except ConfigError as exc:
                errors.append(str(exc))
        if errors and raise_errors:
            raise ConfigError("invalid configuration: " + "; ".join(errors))
        return errors

    def _register_secrets(self) -> None:
        # Before validation: a config too broken to parse still keeps its secrets out.
        for secret in settings.secret_values(self.config, PLATFORMS):
            register_secret(secret)

    @cached_property
    def settings_object(self) -> Settings:
        """The configuration parsed into typed settings (core/settings.py), once."""
        return parse(self.config, PLATFORMS)

    @cached_property
    def runtime(self) -> Runtime:
        self._register_secrets()
        return Runtime(self.settings_object, PLATFORMS)

    def enabled_platforms(self) -> list[settings.PlatformSpec]:
        return [spec for spec in PLATFORMS if spec.key in self.runtime.settings.platforms]

    def discover_streams(self) -> list[Stream]:
        streams: list[Stream] = []
        if self.listing_only and not self.enabled_platforms():
            self.logger.info(
                "No platform configured: listing the streams every platform has without "
                "credentials (streams read from the data appear once a platform is configured)"
            )
            for spec in PLATFORMS:
                streams.extend(spec.static_streams(self))
            return streams
        for spec in self.enabled_platforms():
            streams.extend(spec.configured_streams(self))
        return streams

    # -- running ----------------------------------------------------------------------

    def platform_streams(self, key: str) -> list[Stream]:
        return [s for s in self.streams.values() if getattr(s, "platform", None) == key]

    def preflight(self) -> None:
        """Prove each enabled platform's host and credentials before any record.

        A platform that fails its check is contained: its streams are skipped, the other
        platforms sync and write their state, and the run ends non-zero naming it. Only
        when every platform to sync fails does the run stop here, in one line.
        """
        checked: list[tuple[settings.PlatformSpec, list[Stream]]] = []
        for spec in self.enabled_platforms():
            selected = [
                s
                for s in self.platform_streams(spec.key)
                if s.selected or s.has_selected_descendents
            ]
            if spec.check is not None and selected:
                checked.append((spec, selected))
        failed: list[TapDataPlatformsError] = []
        for spec, selected in checked:
            try:
                assert spec.check is not None
                spec.check(self)
            except (PlatformAuthError, PlatformUnavailableError) as exc:
                if len(checked) == 1:
                    raise
                failed.append(exc)
                names = ", ".join(s.name for s in selected)
                self.logger.error(
                    "%s failed its connection check, its streams are skipped and the other "
                    "platforms go on: %s",
                    spec.title,
                    exc,
                )
                self.runtime.record_failure(
                    f"{spec.title} (streams {names})",
                    str(exc),
                    credentials=isinstance(exc, PlatformAuthError),
                    streams=[s.name for s in selected],
                )
                for stream in self.platform_streams(spec.key):
                    stream.selected = False
        if checked and len(failed) == len(checked):
            raise failed[0]

    # Final for typing in the SDK; extended, not replaced: the SDK's sync runs unchanged.
    def sync_all(self) -> None:  # type: ignore[misc]
        self.state_before = copy.deepcopy(dict(self.state or {}))
        mirrored: list[Stream] = []
        if self.runtime.settings.common.mirroring:
            mirrored = versions.mirrored_streams(self.streams.values())
        version = versions.new_version()
        versions.begin(mirrored, version)
        try:
            super().sync_all()
            # After every partition of every stream, for the streams whose every partition
            # was read: a missed partition's rows must stay in the target.
            complete, held = versions.split_complete(
                mirrored, self.runtime.failures, self.streams.values()
            )
            if complete:
                versions.activate(complete, version)
                # The run ends on a STATE, as without versions: what a target confirms
                # last comes after the activations.
                self.write_message(StateMessage(value=self.state))
            if held:
                self.logger.warning(
                    "A partition failed: no table version is activated for %s in this run, "
                    "so the target keeps rows the source may no longer have there until the "
                    "next complete run",
                    ", ".join(s.name for s in held),
                )
        finally:
            # Records the writer still holds go out before the sync returns.
            flush = getattr(self.message_writer, "flush", None)
            if flush is not None:
                flush()
            readahead.shutdown()

    state_before: dict[str, Any] | None = None

    def log_summary(self) -> None:
        """The run summary: one line per selected stream, and the JSON file if asked."""
        names = [
            s.name
            for s in self.streams.values()
            if s.selected or s.name in self.runtime.stream_counters
        ]
        records = getattr(self.message_writer, "records", {})
        rows = summary.summary_rows(
            names, self.runtime, records, self.state_before, dict(self.state or {})
        )
        self.logger.info("Run summary:")
        for line in summary.table_lines(rows):
            self.logger.info("  %s", line)
        path = self.runtime.settings.common.run_summary_path
        if path:
            summary.write_json(path, rows, self.runtime)

    def finish(self) -> None:
        """End non-zero, naming each failed partition, if any partition failed."""
        counters = {k: v for k, v in sorted(self.runtime.counters.items()) if v}
        if counters:
            self.logger.info("Request counters: %s", counters)
        self.log_summary()
        if self.runtime.skipped and not self.runtime.failures:
            for line in self.runtime.skipped_lines():
                self.logger.warning("%s", line)
        if self.runtime.failures:
            raise SyncFailedError("\n".join(self.runtime.summary_lines()), self.runtime.exit_code())

    @classmethod
    def invoke(  # type: ignore[override]
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: Any = None,
        state: Any = None,
        catalog: Any = None,
    ) -> None:
        if about:
            cls.print_about(about_format)
            sys.exit(0)
        cls.print_version(print_fn=cls.logger.info)
        tap = cls(
            config=config.config if config else None,
            state=None if state is None else inputs.check_state(read_json_stream("--state", state)),
            catalog=(
                None
                if catalog is None
                else inputs.check_catalog(read_json_stream("--catalog", catalog))
            ),
            parse_env_config=bool(config and config.parse_env),
            validate_config=True,
        )
        if tap.input_catalog is not None:
            tap.check_catalog_streams()
        tap.preflight()
        tap.sync_all()
        tap.finish()

    def check_catalog_streams(self) -> None:
        """A catalog from another version: entries for unknown streams are ignored with a
        warning; one without a stream the selected ones need is an error."""
        assert self.input_catalog is not None
        needed = [s.name for s in self.streams.values() if s.selected or s.has_selected_descendents]
        catalog = self.input_catalog.to_dict()
        missing, unknown = inputs.catalog_gaps(catalog, needed, self.streams)
        if not needed:
            self.logger.warning("--catalog: no stream is selected, so there is nothing to extract")
        if unknown:
            self.logger.warning(
                "--catalog: streams this version does not have are ignored: %s", ", ".join(unknown)
            )
        if missing:
            raise ConfigError(
                f"--catalog: no entry for {', '.join(missing)}, which the selected streams "
                "need (a catalog from another version? run --discover again)"
            )

    @classmethod
    def cb_config(cls, ctx: click.Context, param: click.Option, value: tuple[str, ...]) -> Any:
        """``--config``: a file that is not JSON fails in one line, not a traceback."""
        try:
            return super().cb_config(ctx, param, value)
        except UnicodeDecodeError as exc:
            raise ConfigError(f"--config: not UTF-8 text (byte {exc.start})") from None
        except ValueError as exc:  # the SDK's JSON decoder errors are ValueErrors
            line, column = getattr(exc, "lineno", None), getattr(exc, "colno", None)
            detail = f"{getattr(exc, 'msg', exc)}; line {line}, column {column}"
            raise ConfigError(f"--config: not valid JSON ({detail if line else exc})") from None
        except OSError as exc:
            raise ConfigError(f"--config: cannot read {exc.filename}: {exc.strerror}") from None

    @classmethod
    def from_cli(cls, ctx: click.Context, **kwargs: Any) -> TapDataPlatforms:
        """The tap of a command-line mode (``--discover``, ``--test``): the ``--config``
        given, validated."""
        config = ctx.params.get("config")
        return cls(
            config=config.config if config else None,
            parse_env_config=bool(config and config.parse_env),
            validate_config=True,
            **kwargs,
        )

    @classmethod
    def cb_discover(cls, ctx: click.Context, param: click.Option, value: bool) -> None:
        """``--discover``: also without any platform configured (the static streams)."""
        if not value:
            return
        cls.from_cli(ctx, setup_mapper=False, listing_only=True).run_discovery()
        ctx.exit()

    @classmethod
    def cb_test(cls, ctx: click.Context, param: click.Option, value: str) -> None:
        """``--test``: the connection check of every platform, then one record per stream."""
        if value == CliTestOptionValue.Disabled.value:
            return
        tap = cls.from_cli(ctx)
        if value == CliTestOptionValue.Schema.value:
            tap.write_schemas()
        else:
            tap.preflight()
            tap.run_connection_test()
            tap.finish()
        ctx.exit()


def read_json_stream(option: str, handle: Any) -> Any:
    try:
        raw = handle.read()
    except UnicodeDecodeError as exc:  # the file is opened as text
        raise ConfigError(f"{option}: not UTF-8 text (byte {exc.start})") from None
    return inputs.parse_json(option, raw)


def main() -> None:
    """Console entry point: known errors end as one line on stderr and a non-zero exit.

    Exit codes (README, "Exit codes"): 0 success, 1 internal error, 2 configuration or
    credentials, 3 some platforms/streams/partitions failed and the rest were written.
    """
    tune_garbage_collection()
    try:
        TapDataPlatforms.cli()
    except TapDataPlatformsError as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            TapDataPlatforms.logger.error("%s", line)
        sys.exit(exc.exit_code)
    except Exception:
        TapDataPlatforms.logger.exception("Internal error (please report it)")
        sys.exit(EXIT_INTERNAL)


if __name__ == "__main__":
    main()
