"""The one module that touches singer-sdk internals.

Everything else in the tap uses the SDK's public API, and where the SDK offers no public
hook for what the tap needs, the public-named methods here (``send_prepared``,
``sync_partition``, ``write_record_message``, ``state_message_due``, ...) stand in for
it. Each private name used below says why no public hook serves and which upstream hook
would retire it. ``PRIVATE_USES`` lists them all with the parameters passed;
``tests/test_sdk_seam.py`` checks that list against the installed SDK (so a release that
renames or reshapes one fails there, not silently in a sync) and that no other module of
the tap names a private SDK attribute or module.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from typing import TYPE_CHECKING, Any, cast

from singer_sdk import Tap
from singer_sdk.helpers._catalog import (
    pop_deselected_record_properties as _pop_deselected_record_properties,
)
from singer_sdk.helpers._state import reset_state_progress_markers as _reset_progress_markers
from singer_sdk.streams import RESTStream

if TYPE_CHECKING:
    import requests
    from singer_sdk.helpers.types import Context
    from singer_sdk.pagination import BaseAPIPaginator

#: Every private SDK name this module uses: (where it lives, its name, the parameters
#: passed to it by name; ``None`` for an attribute rather than a method).
PRIVATE_USES: tuple[tuple[str, str, tuple[str, ...] | None], ...] = (
    (
        "singer_sdk.helpers._catalog",
        "pop_deselected_record_properties",
        ("record", "schema", "mask"),
    ),
    ("singer_sdk.helpers._state", "reset_state_progress_markers", ("stream_or_partition_state",)),
    ("singer_sdk.streams.RESTStream", "_tap", None),
    ("singer_sdk.streams.RESTStream", "_stream_version", None),
    ("singer_sdk.streams.RESTStream", "_request", ("prepared_request", "context")),
    ("singer_sdk.streams.RESTStream", "_prepare_request", ("context", "page")),
    (
        "singer_sdk.streams.RESTStream",
        "_write_request_duration_log",
        ("endpoint", "response", "context", "extra_tags"),
    ),
    ("singer_sdk.streams.RESTStream", "_sync_records", ("context", "write_messages")),
    ("singer_sdk.streams.RESTStream", "_sync_children", ("child_context",)),
    ("singer_sdk.streams.RESTStream", "_write_record_message", ("record",)),
    ("singer_sdk.streams.RESTStream", "_write_schema_message", ()),
    ("singer_sdk.streams.RESTStream", "_write_activate_version_message", ("full_table_version",)),
    ("singer_sdk.streams.RESTStream", "_write_state_message", ()),
    ("singer_sdk.Tap", "_config", None),
    ("singer_sdk.Tap", "_validate_config", ("raise_errors",)),
)


def pop_deselected_properties(record: dict[str, Any], schema: dict[str, Any], mask: Any) -> None:
    """Drop the properties the catalog deselects, as the SDK does before conformance.

    Private: ``singer_sdk.helpers._catalog``; the tap's record path (core/records.py)
    skips the SDK's message generation, which is where the SDK does this.
    Upstream: a public ``singer_sdk.helpers.catalog`` export.
    """
    _pop_deselected_record_properties(record=record, schema=schema, mask=mask)


def reset_progress_markers(state: dict[str, Any]) -> None:
    """Drop a partition's progress markers, so its bookmark does not move past records
    it never delivered (a failed partition).

    Private: ``singer_sdk.helpers._state``; the public state manager finalizes markers
    (promoting them), it offers no way to discard them.
    Upstream: ``StreamStateManager.reset_progress_markers(context)``.
    """
    _reset_progress_markers(stream_or_partition_state=state)


class SDKStream(RESTStream[Any]):
    """The SDK's REST stream, with public-named hooks where the SDK has only private ones.

    Platform code overrides and calls the public names below, never the SDK's private
    ones, so the whole contact surface with the SDK internals is this class.
    """

    # -- the tap and the table version ------------------------------------------------

    @property
    def tap(self) -> Tap:
        """The tap this stream belongs to (its runtime, its other streams, its writer).

        Private: ``Stream._tap``; the SDK hands a stream its tap but keeps it private.
        Upstream: a public ``Stream.tap`` property.
        """
        return cast("Tap", self._tap)

    @property
    def stream_version(self) -> int | None:
        """The table version the stream's RECORD messages carry.

        Private: ``Stream._stream_version``; the SDK sets it only at the start of each
        partition's sync (``emit_activate_version_messages``), while the tap keeps one
        version across all partitions and activates it once (core/versions.py).
        Upstream: a public, settable ``Stream.stream_version``.
        """
        return cast("int | None", self._stream_version)

    @stream_version.setter
    def stream_version(self, version: int | None) -> None:
        self._stream_version = version

    # -- sending ----------------------------------------------------------------------

    def _request(
        self, prepared_request: requests.PreparedRequest, context: Context | None
    ) -> requests.Response:
        # Private: ``RESTStream._request`` is what ``request_records`` sends each page
        # through; ``request_decorator`` only wraps it and no public hook replaces it
        # (the tap sends through its budget, waits out 429s, reads bodies streamed).
        # Upstream: a public ``send_request(prepared_request, context)`` hook.
        return self.send_prepared(prepared_request, context)

    def send_prepared(
        self, prepared_request: requests.PreparedRequest, context: Context | None
    ) -> requests.Response:
        """Send one prepared request, one try: every page the SDK asks for comes
        through here (``request_decorator`` retries it). The SDK's own sending unless
        overridden: core/http.py sends through the budget."""
        return super()._request(prepared_request=prepared_request, context=context)

    def prepare_page_request(
        self, context: Context | None, paginator: BaseAPIPaginator[Any]
    ) -> requests.PreparedRequest:
        """The request ``request_records`` would send for the paginator's current page
        (for read-ahead, which sends the pages of a partition before its sync asks).

        Private: ``RESTStream._prepare_request``; the public ``get_http_request`` gives
        the parts, and only this private method turns them into a prepared request the
        way the SDK's own loop does (JSON or form payload, parameter encoding).
        Upstream: a public ``prepare_page_request(context, paginator)``.
        """
        return self._prepare_request(context=context, page=paginator)

    def log_request_duration(
        self,
        endpoint: str,
        response: requests.Response,
        context: Context | None,
        extra_tags: dict[str, Any] | None,
    ) -> None:
        """The SDK's request-duration metric for one response.

        Private: ``RESTStream._write_request_duration_log``, which only the SDK's own
        ``_request`` calls; the tap sends through its own path and still logs the metric.
        Upstream: a public metric hook (as ``get_http_request_counter`` is for counts).
        """
        self._write_request_duration_log(
            endpoint=endpoint, response=response, context=context, extra_tags=extra_tags
        )

    # -- the record loop --------------------------------------------------------------

    def _sync_records(
        self, context: Context | None = None, *, write_messages: bool = True
    ) -> Generator[dict[str, Any], Any, Any]:
        # Private: ``Stream._sync_records`` is the SDK's record loop, and the only place
        # where one context can become several partitions, each with its own state:
        # ``partitions`` is fixed before the sync and ``generate_child_contexts`` hands
        # a child one sync per context, while Re:infer predictions learn their partitions
        # only from the parent's context. It is also the only way to a leaner loop
        # (core/records.py, LeanRecordLoop).
        # Upstream: a public ``get_partitions(context)`` hook and a public record loop.
        parts = self.sync_contexts(context)
        for part in [context] if parts is None else parts:
            yield from self.sync_partition(part, write_messages=write_messages)

    def sync_contexts(self, context: Context | None) -> Iterable[Any] | None:
        """The partitions to sync in place of ``context``, or ``None`` for ``context``
        itself. For a stream whose partitions are only known once its parent's context is
        read (Re:infer predictions: one per source, at the model version asked for then)."""
        return None

    def sync_partition(
        self, context: Context | None, *, write_messages: bool = True
    ) -> Generator[dict[str, Any], Any, Any]:
        """Sync one partition: the SDK's record loop unless overridden."""
        yield from super()._sync_records(context=context, write_messages=write_messages)

    def _sync_children(self, child_context: Context | None) -> None:
        # Private: ``Stream._sync_children`` syncs every child for each context; no public
        # hook lets a parent pick which children a context concerns (Dexi: one results
        # stream per run, only that run's stream is synced for an execution).
        # Upstream: a public ``get_child_streams(context)`` hook.
        self.sync_children(child_context)

    def sync_children(self, child_context: Context | None) -> None:
        """Sync the child streams for one context (the SDK's way unless overridden)."""
        super()._sync_children(child_context=child_context)

    def write_starting_replication_value(self, context: Context | None) -> None:
        """Note the bookmark a partition starts from in its state, as a sync does first
        (the SDK's ``_write_starting_replication_value``, through the public state
        manager); for the lean record loop and for read-ahead, which works out a
        partition's first request early."""
        self.state_manager.write_starting_replication_value(
            context=context,
            replication_method=self.replication_method,
            replication_key=self.replication_key,
            config=dict(self.config),
            compare_start_date_fn=self.compare_start_date,
        )

    # -- messages ---------------------------------------------------------------------

    def _write_record_message(self, record: dict[str, Any]) -> None:
        # Private: ``Stream._write_record_message``; the SDK writes each record through
        # its generic conformance and a message object per stream map, and offers no
        # public hook for how a record is written (the tap's compiled conformance and
        # direct encoding, core/records.py).
        # Upstream: a public ``write_record_message(record)`` hook.
        self.write_record_message(record)

    def write_record_message(self, record: dict[str, Any]) -> None:
        """Write one record's RECORD message(s): the SDK's way unless overridden."""
        super()._write_record_message(record=record)

    def _write_schema_message(self) -> None:
        # Private: ``Stream._write_schema_message``; the SDK announces a child's schema
        # once per parent and no public hook says whether to. Targets re-check their
        # tables on every SCHEMA message, so a stream announces its schema once.
        # Upstream: a public ``write_schema_message`` hook (or a once-per-stream switch).
        if self.__dict__.get("_schema_announced"):
            return
        super()._write_schema_message()
        self.__dict__["_schema_announced"] = True

    def write_schema_message(self) -> None:
        """Announce the stream's schema (once per stream, see ``_write_schema_message``)."""
        self._write_schema_message()

    def write_activate_version_message(self, version: int) -> None:
        """One ACTIVATE_VERSION message for the stream (through its stream maps).

        Private: ``Stream._write_activate_version_message``; the SDK sends it only at the
        start of each partition's sync, while the tap sends it once after all partitions.
        Upstream: a public ``write_activate_version_message`` (or a switch to send it at
        the end of the stream's sync).
        """
        self._write_activate_version_message(full_table_version=version)

    def _write_state_message(self) -> None:
        # Private: ``Stream._write_state_message``; the SDK writes the whole tap state
        # after every child sync, and no public hook paces STATE messages (Dexi results
        # and files: dexi/executions.py, ThrottledState).
        # Upstream: a public ``STATE_MSG_FREQUENCY``-like pacing hook for child syncs.
        if self.state_message_due():
            super()._write_state_message()

    def state_message_due(self) -> bool:
        """Whether a pending STATE message is written now (always, unless overridden)."""
        return True

    def write_state_message(self) -> None:
        """Write the tap's state now, if changed (and due, see ``state_message_due``)."""
        self._write_state_message()


class SDKTap(Tap):
    """The SDK's tap, with a public-named hook for config validation."""

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        # Private: ``PluginBase._validate_config`` is the only point where the SDK checks
        # config, and its messages are jsonschema's; the tap says one line per problem,
        # naming the setting. No public hook replaces the check.
        # Upstream: a public ``validate_config`` hook.
        return self.validate_settings(raise_errors=raise_errors)

    def validate_settings(self, *, raise_errors: bool = True) -> list[str]:
        """Check the config; the SDK's check unless overridden."""
        return cast("list[str]", super()._validate_config(raise_errors=raise_errors))

    @property
    def mutable_config(self) -> dict[str, Any]:
        """The config the tap was given, as the SDK holds it (``config`` is read-only).

        Private: ``PluginBase._config``; settings given in a looser form (numbers as
        text, a log level in lower case) are normalised in place before validation, so
        every later read of ``config`` sees the normal form.
        Upstream: a public config-coercion hook before validation.
        """
        return cast("dict[str, Any]", self._config)
