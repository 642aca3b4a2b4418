"""The cheap path from a record to stdout: a buffered msgspec writer and lean conformance.

Two costs dominate a tap that moves many small records (profiled against the sandbox):

- the SDK's writers encode with simplejson and flush stdout after every message, a system
  call per record;
- the SDK's type conformance walks every value of every record against the schema,
  although the streams marked here already produce values of their schema's types.

``MessageWriter`` encodes with msgspec (the SDK's ``singer_sdk.contrib.msgspec`` encoder)
and flushes only after a message that is not a RECORD (SCHEMA, STATE, ...) or when a
record has waited for a second, so a target still sees every STATE right after the records
it covers. ``ConformedRecords`` is a stream mixin for streams of JSON-decoded records:
conformance compiled once from the schema instead of the SDK's generic walk, and
deselected properties popped only when the catalog deselects any.
"""

from __future__ import annotations

import atexit
import datetime
import functools
import gc
import itertools
import logging
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterable
from typing import Any, ClassVar, cast

import orjson
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.contrib.msgspec import encoder as _ENCODER
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.singerlib import RecordMessage, StateMessage
from singer_sdk.singerlib.encoding.simple import Message

from tap_dataplatforms.core.sdk import pop_deselected_properties

#: Allocations of container objects between two young-generation collections; decoded
#: records are many small dicts and lists, and almost never hold cycles.
GC_YOUNG_THRESHOLD = 10_000
#: A buffered record is written out at the latest this long after the last flush.
FLUSH_SECONDS = 1.0
#: Records are written out in pieces of about this size.
BUFFER_BYTES = 1 << 20
#: The lean record loop hands the writer this many records at a time, at most.
WRITE_BATCH = 256


#: ``time_extracted`` of records written through a ``record_writer``: read at most this
#: often (seconds).
EXTRACTED_RESOLUTION = 0.001
#: orjson leaves to msgspec what it would encode differently (datetimes: orjson writes
#: ``+00:00`` where msgspec writes ``Z``; dataclasses and subclasses of built-in types).
_ORJSON_OPTIONS = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


#: A record of JSON-native values as JSON (orjson); a TypeError for anything else. A
#: partial, not a function: it is mapped over many records at a time, without a Python call.
encode_native = functools.partial(orjson.dumps, option=_ORJSON_OPTIONS)


def encode_record(record: Any) -> bytes:
    """A record as JSON: orjson for JSON-native values, msgspec (the SDK's encoder, with
    its hook for other types) for anything orjson declines."""
    try:
        return encode_native(record)
    except TypeError:  # orjson.JSONEncodeError: a type it leaves to msgspec, a big int
        return _ENCODER.encode(record)


def _record_head(stream: str) -> bytes:
    return b'{"type":"RECORD","stream":' + _ENCODER.encode(stream) + b',"record":'


def _record_tail(version: int | None, extracted: Any) -> bytes:
    """The rest of a RECORD line after its record, as msgspec encodes the message."""
    rest: dict[str, Any] = {} if version is None else {"version": version}
    rest["time_extracted"] = extracted
    return b"," + _ENCODER.encode(rest)[1:] + b"\n"


class EncodedRecords:
    """Records their stream encoded itself, in order. Each record is ``text + suffix``:
    ``texts`` hold what differs (bytes-like), ``suffix`` what ends every one (members
    the stream adds, the closing brace); together they are the JSON object the stream's
    post-processing and conformance would make of the record. ``values`` are their
    replication key's values (strings). Only the lean loop takes these, and only from a
    stream it has told so (``LeanRecordLoop.encoded_records_wanted``)."""

    __slots__ = ("suffix", "texts", "values")

    def __init__(self, texts: list[Any], suffix: bytes, values: list[str]) -> None:
        self.texts = texts
        self.suffix = suffix
        self.values = values

    def __len__(self) -> int:
        return len(self.texts)


def utc_now() -> datetime.datetime:
    """The ``time_extracted`` of a record written now."""
    return datetime.datetime.now(datetime.timezone.utc)


def tune_garbage_collection() -> None:
    """Fewer collections for a process that decodes many small records: what exists now
    (modules, the SDK, settings) is moved out of the collector's way (``gc.freeze``) and
    the young generation is collected every ``GC_YOUNG_THRESHOLD`` allocations instead of
    700. Records and messages are unchanged; a full collection still runs when one is due.
    """
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


class MessageWriter(MsgSpecWriter):
    """msgspec-encoded Singer messages on stdout, flushed at each non-RECORD message.

    Records collect in a buffer of its own (stdout may be unbuffered, as with
    ``PYTHONUNBUFFERED``), written out when it fills, when a second has passed, at any
    other message and at exit. A RECORD written through ``write_record`` or a
    ``record_writer`` is the line the SDK's message would give, its record encoded by
    orjson (the fastest encoder for JSON-native values; anything orjson would write
    differently from msgspec, such as a datetime, an integer beyond 64 bits or a
    subclass, is encoded by msgspec as before).
    """

    def __init__(self) -> None:
        super().__init__()
        #: Lines not yet written out (joined at a flush: a growing buffer of a megabyte
        #: would be copied again and again as it grows), and their size in bytes.
        self._lines: list[bytes] = []
        self._size = 0
        self._flushed_at = time.monotonic()
        #: RECORD messages written, per stream (the run summary).
        self.records: Counter[str] = Counter()
        atexit.register(self.flush)

    def write_message(self, message: Message) -> None:
        # A STATE's dict is made here: ``to_dict`` deep-copies the whole state first (the
        # value is encoded at once, nothing can change it in between).
        if type(message) is StateMessage and message.value is not None:
            self._encode({"type": message.type, "value": message.value})
        else:
            self._encode(message.to_dict())
        if isinstance(message, RecordMessage):
            self.records[message.stream] += 1
        if (
            not isinstance(message, RecordMessage)
            or self._size >= BUFFER_BYTES
            or time.monotonic() - self._flushed_at >= FLUSH_SECONDS
        ):
            self.flush()

    def write_record(
        self, stream: str, record: dict[str, Any], version: int | None, extracted: Any
    ) -> None:
        """A RECORD message as ``RecordMessage.to_dict`` has it, without the object."""
        line = _record_head(stream) + encode_record(record) + _record_tail(version, extracted)
        self._lines.append(line)
        self._size += len(line)
        self.records[stream] += 1
        if self._size >= BUFFER_BYTES or time.monotonic() - self._flushed_at >= FLUSH_SECONDS:
            self.flush()

    def record_writer(
        self, stream: str, version: int | None
    ) -> Callable[[dict[str, Any] | list[dict[str, Any]] | EncodedRecords], None]:
        """``write_record`` for one stream and table version, worked out once: the
        message's fixed parts are encoded ahead, and ``time_extracted`` is read at most
        once a millisecond (``EXTRACTED_RESOLUTION``) instead of for every record.
        A list of records (never empty) and ``EncodedRecords`` are written as one piece:
        each line is the head, a record's JSON and the tail, so the lines are joined
        around the records' JSON in one call."""
        head = _record_head(stream)
        append = self._lines.append
        records = self.records
        monotonic = time.monotonic
        encode = encode_record
        tail = b""
        tail_until = 0.0

        def write(record: dict[str, Any] | list[dict[str, Any]] | EncodedRecords) -> None:
            nonlocal tail, tail_until
            now = monotonic()
            if now >= tail_until:
                tail = _record_tail(version, utc_now())
                tail_until = now + EXTRACTED_RESOLUTION
            if type(record) is EncodedRecords:
                ending = record.suffix + tail
                data = head + (ending + head).join(record.texts) + ending
                count = len(record.texts)
            elif type(record) is list:  # records written together: one join for them all
                try:
                    bodies = list(map(encode_native, record))
                except TypeError:  # a value orjson leaves to msgspec
                    bodies = [encode(one) for one in record]
                data = head + (tail + head).join(bodies) + tail
                count = len(record)
            else:
                data = head + encode(record) + tail
                count = 1
            append(data)
            self._size += len(data)
            records[stream] += count
            if self._size >= BUFFER_BYTES or now - self._flushed_at >= FLUSH_SECONDS:
                self.flush()

        return write

    def _encode(self, message: dict[str, Any]) -> None:
        # Whole or not at all: an error leaves no partial line.
        line = _ENCODER.encode(message) + b"\n"
        self._lines.append(line)
        self._size += len(line)

    def flush(self) -> None:
        if self._lines:
            data = b"".join(self._lines)
            out = getattr(sys.stdout, "buffer", None)
            if out is not None:
                out.write(data)
                out.flush()
            else:  # a text stream in place of stdout (tests capture output so)
                sys.stdout.write(data.decode("utf-8"))
                sys.stdout.flush()
            self._lines.clear()
            self._size = 0
        self._flushed_at = time.monotonic()


Conformer = Callable[[Any, set[str]], Any]


def _types(schema: dict[str, Any]) -> set[str]:
    declared = schema.get("type")
    if isinstance(declared, str):
        return {declared}
    types = set(declared or [])
    for option in schema.get("anyOf") or []:
        types |= _types(option)
    return types


def compile_conformer(schema: dict[str, Any], path: str = "") -> Conformer | None:
    """What the SDK's conformance does to JSON-decoded values, compiled once per schema:
    drop properties the schema does not declare (named in ``unmapped``), make values of
    boolean-only properties booleans, and non-finite floats ``None``. ``None`` when
    nothing under this schema can need a change. Values are changed in place."""
    types = _types(schema)
    properties = schema.get("properties")
    if "object" in types and isinstance(properties, dict):
        known = frozenset(properties)
        closed = not schema.get("additionalProperties")
        children: list[tuple[str, Conformer]] = []
        for name, sub in properties.items():
            child = compile_conformer(sub, f"{path}{name}.")
            if child is not None:
                children.append((name, child))
        if not closed and not children:
            return None  # any keys are welcome and no declared value can need a change

        def conform_object(value: Any, unmapped: set[str]) -> Any:
            if not isinstance(value, dict):
                return value
            if closed and not known.issuperset(value):
                for name in [k for k in value if k not in known]:
                    del value[name]
                    unmapped.add(path + name)
            for name, child in children:
                item = value.get(name)
                if item is not None:
                    value[name] = child(item, unmapped)
            return value

        return conform_object
    items = schema.get("items")
    if "array" in types and isinstance(items, dict):
        item_conformer = compile_conformer(items, path)
        if item_conformer is None:
            return None

        def conform_array(value: Any, unmapped: set[str]) -> Any:
            if not isinstance(value, list):
                return value
            return [item_conformer(item, unmapped) for item in value]

        return conform_array
    if types and types <= {"boolean", "null"}:
        return _to_boolean
    if "number" in types:
        return lambda value, unmapped: (
            None if type(value) is float and not math.isfinite(value) else value
        )
    return None


_TRUE_TEXT = frozenset({"true", "t", "yes", "y", "1"})
_FALSE_TEXT = frozenset({"false", "f", "no", "n", "0"})


def _to_boolean(value: Any, unmapped: set[str]) -> Any:
    """A boolean column's value as a boolean: numbers by ``!= 0`` (as the SDK does), text
    by what it says. The SDK would make the text "false" ``True``; text that names no
    truth value becomes ``None``, with a warning, rather than a silently wrong ``True``."""
    if type(value) is bool:
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE_TEXT:
            return True
        if text in _FALSE_TEXT:
            return False
        _warn_not_boolean()
        return None
    return value != 0


_not_boolean_warned = False


def _warn_not_boolean() -> None:
    global _not_boolean_warned
    if not _not_boolean_warned:
        _not_boolean_warned = True
        logging.getLogger("tap-dataplatforms.records").warning(
            "A boolean field held text that names no truth value; delivered as null "
            "(said once per run)"
        )


def boolean_text_fixer(schema: dict[str, Any]) -> Callable[[dict[str, Any]], None] | None:
    """For streams on the SDK's own conformance: turn text in the top-level boolean-only
    properties into the boolean it names before the SDK's ``!= 0`` makes "false" true.
    ``None`` when the schema has no such property."""
    names = [
        name
        for name, sub in (schema.get("properties") or {}).items()
        if isinstance(sub, dict) and (types := _types(sub)) and types <= {"boolean", "null"}
    ]
    if not names:
        return None

    def fix(record: dict[str, Any]) -> None:
        for name in names:
            value = record.get(name)
            if isinstance(value, str):
                record[name] = _to_boolean(value, set())

    return fix


class ConformedRecords:
    """Mixin (before the SDK stream class) for streams of JSON-decoded records.

    Their values are JSON-native (str, int, float, bool, None, lists and dicts of them),
    so the SDK's walk over every value for datetimes, bytes and decimals finds nothing;
    what is left of conformance runs compiled from the schema (``compile_conformer``).
    A stream that builds each record from a column list it owns, with values of the
    declared types, sets ``RECORDS_FIT_SCHEMA`` and skips even that.
    """

    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE
    RECORDS_FIT_SCHEMA: ClassVar[bool] = False

    # Attributes of the SDK stream this mixin is combined with.
    name: str
    schema: dict[str, Any]
    effective_schema: dict[str, Any]
    mask: Any
    stream_maps: list[Any]
    logger: logging.Logger
    stream_version: int | None
    tap: Any
    state_manager: Any
    child_streams: list[Any]

    def _record_path(self) -> tuple[bool, Conformer | None, str | None]:
        """(any property deselected, the compiled conformer, the stream's name out when
        its only map is the identity), worked out once."""
        cached = self.__dict__.get("_record_path_cache")
        if cached is None:
            deselected = any(not selected for selected in dict(self.mask).values())
            # The catalog's schema where one is given, as the SDK conforms to it.
            conformer = (
                None if self.RECORDS_FIT_SCHEMA else compile_conformer(self.effective_schema)
            )
            maps = self.stream_maps
            identity = (
                maps[0].stream_alias
                if len(maps) == 1
                and type(maps[0]) is SameRecordTransform
                and not maps[0].flattening_enabled
                else None
            )
            cached = (deselected, conformer, identity)
            self.__dict__["_record_path_cache"] = cached
            self.__dict__["_unmapped_warned"] = set()
        return cast("tuple[bool, Conformer | None, str | None]", cached)

    def _fit(self, record: dict[str, Any], deselected: bool, conformer: Conformer | None) -> None:
        if deselected:
            pop_deselected_properties(record, self.schema, self.mask)
        if conformer is not None:
            unmapped: set[str] = set()
            conformer(record, unmapped)
            if unmapped:
                self._warn_unmapped(unmapped)

    def write_record_message(self, record: dict[str, Any]) -> None:
        deselected, conformer, identity = self._record_path()
        if identity is None:  # stream maps or flattening: the SDK's path
            self._fit(record, deselected, conformer)
            for message in self._mapped_messages(record):
                self.tap.write_message(message)
        else:
            # No map to apply: one message, without the generator and map call per record.
            self._fit(record, deselected, conformer)
            writer = self.tap.message_writer
            if isinstance(writer, MessageWriter):
                writer.write_record(identity, record, self.stream_version, utc_now())
            else:
                self.tap.write_message(
                    RecordMessage(
                        stream=identity,
                        record=record,
                        version=self.stream_version,
                        time_extracted=utc_now(),
                    )
                )
        self.state_manager.is_flushed = False

    def generate_child_contexts(self, record: dict[str, Any], context: Any) -> Iterable[Any]:
        # A stream without children has no context to hand on: nothing to make per record.
        if not self.child_streams:
            return ()
        return cast("Iterable[Any]", super().generate_child_contexts(record, context))  # type: ignore[misc]

    def _mapped_messages(self, record: dict[str, Any]) -> Generator[RecordMessage, None, None]:
        for stream_map in self.stream_maps:
            mapped = stream_map.transform(record)
            if mapped is not None:
                yield RecordMessage(
                    stream=stream_map.stream_alias,
                    record=mapped,
                    version=self.stream_version,
                    time_extracted=utc_now(),
                )

    def _warn_unmapped(self, unmapped: set[str]) -> None:
        warned: set[str] = self.__dict__["_unmapped_warned"]
        new = unmapped - warned
        if new:
            warned |= new
            self.logger.warning(
                "Properties %s were present in the '%s' stream but not found in catalog "
                "schema. Ignoring.",
                tuple(sorted(new)),
                self.name,
            )


def split_at_states(records: EncodedRecords, index: int, frequency: int) -> list[EncodedRecords]:
    """``records`` cut where a STATE falls due (after every ``frequency`` records, counted
    from ``index`` records already written), so each STATE follows the records it covers."""
    size = len(records)
    first = frequency - index % frequency
    if size <= first:
        return [records]
    cuts = [0, *range(first, size, frequency), size]
    return [
        EncodedRecords(records.texts[a:b], records.suffix, records.values[a:b])
        for a, b in itertools.pairwise(cuts)
    ]


class LeanRecordLoop:
    """Mixin (before ``ConformedRecords``) for a child stream without children of its
    own, full-table or sorted incremental: the SDK's per-record loop
    (``SDKStream.sync_partition``), less the work such a stream does not need.

    Per record the SDK looks the partition's state up again, converts both bookmark values
    for comparison, asks every (absent) child stream for a context, counts the record in
    its metrics and builds a message object per stream map. Here the state entry is looked
    up once per partition, a full-table stream's state is left alone (as the SDK's
    increment does) and a sorted stream's bookmark is set to the record's replication
    value (a string; anything else takes the SDK's path), which is what the SDK's
    increment does for a sorted stream whose order is not checked; the record count goes
    up a page at a time and each RECORD line is encoded straight into the writer's
    buffer (``MessageWriter.record_writer``). The messages, in content and order, are
    those of the SDK's loop (tested); a stream or a run this does not fit (children, a
    record limit, batches, stream maps, ``check_sorted``, an unsorted incremental stream)
    takes the SDK's loop.

    While a partition runs here with no property deselected, ``encoded_records_wanted``
    is true: the stream may then yield ``EncodedRecords``, already post-processed,
    conformed and encoded, which go to the writer as they are, a STATE after every
    ``STATE_MSG_FREQUENCY`` records as for any others.
    """

    #: Off: the SDK's loop, always (for comparisons).
    LEAN_RECORD_LOOP: ClassVar[bool] = True
    #: Whether the partition being read may yield ``EncodedRecords`` (see above).
    encoded_records_wanted: bool = False

    # Attributes of the SDK stream this mixin is combined with.
    ABORT_AT_RECORD_COUNT: int | None
    STATE_MSG_FREQUENCY: int
    write_record_message: Callable[[dict[str, Any]], None]
    replication_key: str | None
    child_streams: list[Any]
    state_manager: Any
    tap: Any

    def _lean_loop_fits(self, context: Any, write_messages: bool) -> bool:
        stream = cast("Any", self)
        if stream.replication_method == "INCREMENTAL":
            order_known = bool(
                self.replication_key
                and stream.is_sorted
                and not stream.check_sorted
                and stream.state_partitioning_keys is None
            )
        else:
            order_known = stream.replication_method == "FULL_TABLE"
        return bool(
            self.LEAN_RECORD_LOOP
            and write_messages
            and context
            and not self.child_streams
            and self.ABORT_AT_RECORD_COUNT is None
            and stream.selected
            and order_known
            and stream._record_path()[2] is not None
            and isinstance(self.tap.message_writer, MessageWriter)
            and type(self).write_record_message is ConformedRecords.write_record_message
        )

    def sync_partition(
        self, context: Any, *, write_messages: bool = True
    ) -> Generator[dict[str, Any], Any, Any]:
        if not self._lean_loop_fits(context, write_messages):
            yield from super().sync_partition(context, write_messages=write_messages)  # type: ignore[misc]
            return
        stream = cast("Any", self)
        key = self.replication_key if stream.replication_method == "INCREMENTAL" else None
        frequency = self.STATE_MSG_FREQUENCY
        record_counter = stream.get_record_counter()
        timer = stream.get_sync_timer()
        with record_counter, timer:
            record_counter.with_context(context)
            timer.with_context(context)
            partition = self.state_manager.get_state_partition_context(context)
            stream.write_starting_replication_value(context)
            # What the SDK's _process_record adds: the partition's values a record lacks.
            fill = list((partition or {}).items())
            state: dict[str, Any] | None = None
            # ConformedRecords.write_record_message, worked out once per partition.
            deselected, conformer, identity = stream._record_path()
            fit = stream._fit if deselected or conformer is not None else None
            write = self.tap.message_writer.record_writer(identity, stream.stream_version)
            state_manager = self.state_manager
            post_process = stream.post_process
            index = counted = 0
            # Records written a batch at a time (one join, one clock read), always
            # before the STATE that covers them and before any other message.
            pending: list[dict[str, Any]] = []

            def bookmark(value: str) -> None:
                """A sorted stream's bookmark at a record's replication value."""
                nonlocal state
                if state is None:
                    state = cast("dict[str, Any]", stream.get_context_state(context))
                state["replication_key"] = key
                state["replication_key_value"] = value

            def state_due() -> None:
                """After every ``frequency`` records: they are written, then the STATE."""
                nonlocal counted
                if pending:
                    write(pending)
                    pending.clear()
                stream.write_state_message()
                # The record count goes up a page at a time (its log is periodic).
                record_counter.increment(index - counted)
                counted = index

            self.encoded_records_wanted = not deselected
            try:
                for record in stream.get_records(context):
                    if type(record) is EncodedRecords:
                        if pending:
                            write(pending)
                            pending.clear()
                        for part in split_at_states(record, index, frequency):
                            write(part)
                            state_manager.is_flushed = False
                            if key is not None:
                                bookmark(part.values[-1])
                            index += len(part)
                            if index % frequency == 0:
                                state_due()
                        continue  # (records are yielded for children: this stream has none)
                    record = post_process(record, context)
                    if record is None:
                        continue
                    for name, filled in fill:
                        if name not in record:
                            record[name] = filled
                    if fit is not None:
                        fit(record, deselected, conformer)
                    pending.append(record)
                    if len(pending) == WRITE_BATCH:
                        write(pending)
                        pending.clear()
                    state_manager.is_flushed = False
                    if key is not None:
                        value = record[key]
                        if type(value) is str:
                            bookmark(value)
                        else:  # null or not a string: the SDK's conversions and warning
                            state_manager.increment_state(
                                record, context=context, replication_key=key
                            )
                    index += 1
                    if index % frequency == 0:
                        state_due()
                    yield record
            finally:
                self.encoded_records_wanted = False
                if pending:
                    write(pending)
                record_counter.increment(index - counted)
            if context == partition:
                state_manager.finalize_state(stream.get_context_state(context))
        stream.write_state_message()
