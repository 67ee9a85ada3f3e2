"""Envelope unwrap/validate and wrap (contract 1.1, 1.2, 5.1, 5.2) as pure functions.

Nothing here knows Kafka, disk or asyncio: a record is bytes in, an ``Accepted`` or a
``Rejection`` out, so the whole contract is tested without a broker.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from google.protobuf.message import DecodeError, Message
from google.protobuf.timestamp_pb2 import Timestamp
from pit.envelope.v1.envelope_pb2 import EventEnvelope

from pit_streams.contract.keys import Key, clean_text, parse_key
from pit_streams.contract.partition import murmur2_partition
from pit_streams.contract.reasons import Reason, Rejection
from pit_streams.contract.timestamps import timestamp_problem

# Fields every envelope must carry (contract 1.2); ``cell`` may be empty for series-scoped keys.
_REQUIRED_STRINGS = ("event_id", "producer", "key", "payload_type")
_DERIVED_ID_NAMESPACE = uuid.UUID("5b0f8f1e-2f8e-4d8a-9a57-7069742d7374")
_NAMESPACE_SHA1 = hashlib.sha1(_DERIVED_ID_NAMESPACE.bytes)
# RFC 4122 variant bits (10xx) set on the hex digit that holds them: (digit & 0x3) | 0x8.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
# Ids are copied into every output's causation/correlation id and into changelog keys, so an
# unbounded one makes records the broker refuses and stalls the batch (issue 10).
MAX_EVENT_ID_CHARS = 128
MAX_PRODUCER_CHARS = 256
MAX_TRACE_ID_CHARS = 128
_BOUNDED = (
    ("event_id", MAX_EVENT_ID_CHARS),
    ("producer", MAX_PRODUCER_CHARS),
    ("causation_id", MAX_TRACE_ID_CHARS),
    ("correlation_id", MAX_TRACE_ID_CHARS),
    ("dedupe_scope", MAX_TRACE_ID_CHARS),  # part of every dedupe mark kept in the changelog
)
_PRINTABLE = ("event_id", "producer", "dedupe_scope", "tenant", "series", "cell")
# Payload fields that repeat an envelope field: when set they must say the same thing.
_MIRRORED = (("tenant_id", "tenant"), ("series_id", "series"), ("cell_id", "cell"), ("event_id", "event_id"))
_mirrored_of: dict[type[Message], tuple[tuple[str, str], ...]] = {}


@dataclass(frozen=True, slots=True)
class Accepted:
    """An envelope that passed every check, with its payload decoded."""

    envelope: EventEnvelope
    payload: Message
    key: Key


def payload_type_of(message_type: type[Message] | Message) -> str:
    """The fully-qualified protobuf name the contract puts in ``payload_type``."""
    cls = message_type if isinstance(message_type, type) else type(message_type)
    name = _payload_types.get(cls)
    if name is None:  # once per message class: the descriptor lookup runs for every output otherwise
        name = _payload_types[cls] = str(cls.DESCRIPTOR.full_name)
    return name


_payload_types: dict[type[Message], str] = {}


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _missing_fields(env: EventEnvelope, require_payload: bool = True) -> list[str]:
    missing = [name for name in _REQUIRED_STRINGS if not getattr(env, name)]
    if not env.HasField("ts"):
        missing.append("ts")
    if not env.tenant and not env.key.startswith("venue/"):
        missing.append("tenant")
    if not env.series and not env.key.startswith("venue/"):
        missing.append("series")
    if require_payload and not env.payload:
        missing.append("payload")
    return missing


def validate(
    env: EventEnvelope,
    expected_type: str | None,
    *,
    record_key: bytes | None = None,
    check_record_key: bool = True,
    allow_venue: bool = False,
    tenants: Collection[str] | None = None,
    require_payload: bool = True,
) -> Key | Rejection:
    """Check an envelope's invariants; return its parsed key or the first rule it breaks.

    ``expected_type`` of ``None`` skips the payload-type check (used for outputs whose
    type was already fixed by the caller). ``require_payload=False`` admits an empty payload,
    which is how protobuf encodes a message whose fields are all defaults (``Int64Value(0)``).
    """
    return _validate(env, env.payload, expected_type, record_key, check_record_key, allow_venue, tenants,
                     require_payload)


def _validate(
    env: EventEnvelope,
    payload: bytes,
    expected_type: str | None,
    record_key: bytes | None,
    check_record_key: bool,
    allow_venue: bool,
    tenants: Collection[str] | None,
    require_payload: bool,
) -> Key | Rejection:
    """``validate``, given the envelope's ``payload`` (which ``unwrap`` decodes next).

    Runs for every record: each field is read from the envelope once, then only the locals are
    used (every read through upb looks the field up by name and builds a new str or bytes).
    """
    event_id, producer, key_text, payload_type = env.event_id, env.producer, env.key, env.payload_type
    tenant, series, cell = env.tenant, env.series, env.cell
    if not (event_id and producer and key_text and payload_type and payload and tenant and series
            and env.HasField("ts")):
        missing = _missing_fields(env, require_payload)
        if missing:
            return Rejection(Reason.MISSING_FIELD, "envelope lacks " + ", ".join(missing))
    shape = _shape(env, event_id, producer, tenant + series + cell)
    if shape is not None:
        return shape
    bad_ts = timestamp_problem(env.ts)
    if bad_ts:
        return Rejection(Reason.BAD_TIMESTAMP, bad_ts)
    key = parse_key(key_text, allow_venue=allow_venue)
    if isinstance(key, Rejection):
        return key
    if key.venue and (tenant or series or cell):
        # A tenant on a venue key would slip past App(tenants=...), which only checks tenant keys.
        return Rejection(
            Reason.KEY_MISMATCH,
            f"venue key {key_text!r} carries tenant={tenant!r} series={series!r} cell={cell!r}:"
            " venue events have no tenant, series or cell",
        )
    if not key.venue and (key.tenant, key.series, key.cell) != (tenant, series, cell):
        return Rejection(
            Reason.KEY_MISMATCH,
            f"key {key_text!r} disagrees with fields tenant={tenant!r} series={series!r}"
            f" cell={cell!r}",
        )
    if check_record_key and record_key != key_text.encode():
        shown = record_key.decode("utf-8", "replace") if record_key is not None else None
        return Rejection(
            Reason.RECORD_KEY_MISMATCH, f"Kafka record key {shown!r} differs from envelope key {key_text!r}"
        )
    if tenants is not None and not key.venue and key.tenant not in tenants:
        return Rejection(Reason.TENANT_NOT_ALLOWED, f"tenant {key.tenant!r} is not served by this app")
    if expected_type is not None and payload_type != expected_type:
        return Rejection(
            Reason.PAYLOAD_TYPE_MISMATCH,
            f"payload_type {payload_type!r} where this topic carries {expected_type!r}",
        )
    payload_sha256 = env.payload_sha256
    if payload_sha256 and payload_sha256.lower() != sha256_hex(payload):
        return Rejection(Reason.PAYLOAD_HASH_MISMATCH, "payload_sha256 does not match the payload bytes")
    return key


def _shape(env: EventEnvelope, event_id: str, producer: str, location: str) -> Rejection | None:
    """Lengths, printable text and ``producer`` = ``name@version``; ``location`` is tenant, series
    and cell joined (read by the caller)."""
    # The six text fields are checked as one string (a character property, so the join is clean
    # exactly when each field is); the per-field loops below only name the culprit.
    scope = env.dedupe_scope
    if (
        len(event_id) > MAX_EVENT_ID_CHARS or len(producer) > MAX_PRODUCER_CHARS or len(scope) > MAX_TRACE_ID_CHARS
        or len(env.causation_id) > MAX_TRACE_ID_CHARS or len(env.correlation_id) > MAX_TRACE_ID_CHARS
    ):
        for name, limit in _BOUNDED:
            value = getattr(env, name)
            if len(value) > limit:
                return Rejection(Reason.FIELD_TOO_LONG, f"{name} has {len(value)} characters, more than {limit}")
    if not clean_text(event_id + producer + scope + location):
        for name in _PRINTABLE:
            value = getattr(env, name)
            if not clean_text(value):
                return Rejection(
                    Reason.BAD_CHARACTERS,
                    f"{name} {value[:80]!r} contains control or format characters (NUL, newline, bidi overrides)",
                )
    name, at, version = producer.partition("@")
    if not name or not at or not version or "@" in version or " " in producer:
        return Rejection(
            Reason.BAD_PRODUCER, f"producer {producer!r} is not service name and version as name@version"
        )
    return None


def _mirrored_fields(payload: Message) -> tuple[tuple[str, str], ...]:
    """Which of tenant_id/series_id/cell_id/event_id the payload type has (remembered per class:
    ``type(payload)`` is a cheaper lookup than its descriptor's name)."""
    known = _mirrored_of.get(type(payload))
    if known is None:
        fields = payload.DESCRIPTOR.fields_by_name
        known = _mirrored_of[type(payload)] = tuple(
            pair for pair in _MIRRORED
            if pair[0] in fields and fields[pair[0]].type == fields[pair[0]].TYPE_STRING
        )
    return known


def check_payload_fields(env: EventEnvelope, payload: Message) -> Rejection | None:
    """A payload's own tenant_id/series_id/cell_id/event_id, when set, must equal the envelope's."""
    for field_name, env_name in _mirrored_fields(payload):
        own = getattr(payload, field_name)
        if own and own != getattr(env, env_name):
            return Rejection(
                Reason.PAYLOAD_FIELD_MISMATCH,
                f"payload {field_name}={own[:140]!r} disagrees with envelope {env_name}={getattr(env, env_name)!r}",
            )
    return None


def check_partition(record_key: bytes | None, partition: int, partition_count: int) -> Rejection | None:
    """A keyed record must sit on the partition the Java client's murmur2 partitioner picks."""
    if record_key is None:
        return None
    expected = murmur2_partition(record_key, partition_count)
    if expected == partition:
        return None
    return Rejection(
        Reason.WRONG_PARTITION,
        f"record is on partition {partition} but key {record_key.decode('utf-8', 'replace')!r} belongs on"
        f" partition {expected} of {partition_count} (murmur2, the Java client's default): fix the producer's"
        " partitioner (librdkafka murmur2_random, kafka-go Murmur2Balancer) and replay",
    )


def unwrap(
    value: bytes | None,
    record_key: bytes | None,
    payload_class: type[Message],
    *,
    allow_venue: bool = False,
    tenants: Collection[str] | None = None,
    topic: str | None = None,
    partition: int | None = None,
    partition_counts: Mapping[str, int] | None = None,
) -> Accepted | Rejection:
    """Parse, validate and decode one consumed record.

    ``topic`` is the record's topic: an envelope naming another one is refused. With
    ``partition`` and the topic's count in ``partition_counts``, a record not on its key's
    murmur2 partition is refused (``wrong_partition``).

    >>> from pit.events.v1.events_pb2 import TradeFillEvent
    >>> unwrap(b"not protobuf", b"k", TradeFillEvent).reason
    <Reason.NOT_ENVELOPE: 'not_envelope'>
    """
    if not value:
        return Rejection(Reason.NOT_ENVELOPE, "record has no value")
    env = EventEnvelope()
    try:
        env.ParseFromString(value)
    except (DecodeError, ValueError) as exc:
        return Rejection(Reason.NOT_ENVELOPE, f"value is not a pit.envelope.v1.EventEnvelope: {exc}")
    data = env.payload  # read once: checked against its hash, then decoded
    key = _validate(env, data, payload_type_of(payload_class), record_key, True, allow_venue, tenants, True)
    if isinstance(key, Rejection):
        return key
    named = env.topic if topic is not None else ""
    if named and named != topic:
        return Rejection(Reason.TOPIC_MISMATCH, f"envelope names topic {named[:200]!r} but was read from {topic}")
    if topic is not None and partition is not None and partition_counts:
        count = partition_counts.get(topic)
        if count:
            misplaced = check_partition(record_key, partition, count)
            if misplaced is not None:
                return misplaced
    payload = payload_class()
    try:
        payload.ParseFromString(data)
    except (DecodeError, ValueError) as exc:
        return Rejection(Reason.PAYLOAD_DECODE_ERROR, f"payload does not decode as {env.payload_type}: {exc}")
    mismatch = check_payload_fields(env, payload)
    if mismatch is not None:
        return mismatch
    return Accepted(env, payload, key)


def derive_event_id(app: str, source_event_id: str, ordinal: int | str) -> str:
    """The id of an output: a UUIDv5 of (app, source event id, output ordinal).

    Re-processing the same input after a crash yields the same ids, so downstream
    dedupe removes the repeated effect.
    """
    return _uuid5(f"{app}\x1f{source_event_id}\x1f{ordinal}")


def output_event_id(app: str, source: EventEnvelope, ordinal: int) -> str:
    """The id of ``app``'s ``ordinal``-th output for ``source``: derived from the source's tenant,
    ``dedupe_scope`` and ``event_id`` (control characters are refused in all three, so ``\x1f``
    separates them unambiguously). Two tenants' events that share an ``event_id`` therefore never
    get outputs with one id — a tenant cannot make another's output look like a duplicate downstream.
    """
    # derive_event_id(app, f"{tenant}\x1f{scope}\x1f{event_id}", ordinal), built as one string.
    return _uuid5(f"{app}\x1f{source.tenant}\x1f{source.dedupe_scope}\x1f{source.event_id}\x1f{ordinal}")


def _uuid5(name: str) -> str:
    """``str(uuid.uuid5(_DERIVED_ID_NAMESPACE, name))`` without UUID objects (once per output):
    the namespace is hashed once, and the version and variant are set on the hex digits."""
    sha1 = _NAMESPACE_SHA1.copy()
    sha1.update(name.encode())
    h = sha1.hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def wrap(
    payload: Message,
    *,
    key: Key,
    event_id: str,
    producer: str,
    ts: Timestamp,
    topic: str = "",
    causation_id: str = "",
    correlation_id: str = "",
) -> EventEnvelope:
    """Build the envelope for ``payload``; the payload bytes are serialised deterministically."""
    return wrap_bytes(
        payload.SerializeToString(deterministic=True), payload_type_of(payload), key=key, event_id=event_id,
        producer=producer, ts=ts, topic=topic, causation_id=causation_id, correlation_id=correlation_id,
    )


def wrap_bytes(
    data: bytes,
    payload_type: str,
    *,
    key: Key,
    event_id: str,
    producer: str,
    ts: Timestamp,
    topic: str = "",
    causation_id: str = "",
    correlation_id: str = "",
) -> EventEnvelope:
    """``wrap`` for a payload that is already serialised as ``payload_type``."""
    # Set field by field: upb's keyword constructor costs more per field than attribute
    # assignment (measured ~7 % of this function), and the serialised bytes are the same.
    env = EventEnvelope()
    env.event_id = event_id
    env.key = key.text
    env.tenant = key.tenant
    env.series = key.series
    env.cell = key.cell
    env.producer = producer
    env.payload_type = payload_type
    env.payload = data
    env.payload_sha256 = hashlib.sha256(data).hexdigest()
    env.topic = topic
    env.causation_id = causation_id
    env.correlation_id = correlation_id
    env.ts.CopyFrom(ts)
    return env
