"""Dead letters as envelopes: the refused bytes exactly, with the reason and where they came from.

Contract 1.1 puts every Kafka message in an ``EventEnvelope``, the dead-letter topic included
(docs/adr/0005-dead-letter-envelopes.md, superseding 0002). The payload is a
``google.protobuf.BytesValue`` holding the refused record's value byte for byte, so a fixed record
is replayed by producing ``read_dead_letter(value).value`` back to ``pit.source.topic`` with the
key in ``pit.source.key``.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.wrappers_pb2 import BytesValue
from pit.envelope.v1.envelope_pb2 import EventEnvelope

from pit_streams.contract import Key, Rejection, derive_event_id, parse_key
from pit_streams.contract.envelope import wrap_bytes
from pit_streams.contract.keys import MAX_KEY_CHARS
from pit_streams.contract.naming import DEAD_LETTER_TOPIC
from pit_streams.contract.timestamps import record_time
from pit_streams.errors import ContractError
from pit_streams.transport.base import Headers, Record

PAYLOAD_TYPE = "google.protobuf.BytesValue"
REASON = "pit.reason"
DETAIL = "pit.detail"
SOURCE_TOPIC = "pit.source.topic"
SOURCE_PARTITION = "pit.source.partition"
SOURCE_OFFSET = "pit.source.offset"
SOURCE_KEY = "pit.source.key"
SOURCE_VALUE_NULL = "pit.source.value_null"
# Set when the dead letter does not carry the refused value (and the source headers): their size in
# bytes. The record itself stays at its pit.source.* coordinates.
SOURCE_OMITTED = "pit.source.omitted_bytes"
GROUP = "pit.group"
SOURCE_HEADER_PREFIX = "pit.source.header."
OPS_KEY = Key(venue="pit-streams")
_MAX_DETAIL = 2000
# The most of the refused record (value and headers) a dead letter carries. A record its topic took
# compressed can be larger uncompressed; past this its copy could be refused by the dead-letter
# topic (4 MiB in infra/topics.yaml) and the record never get past (refused dead letters are
# retried, then sent bare).
MAX_CARRIED_BYTES = 3 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    value: bytes
    key: bytes
    headers: Headers


def _dead_letter_key(record: Record) -> Key:
    """The refused record's own canonical tenant key when it had one (ops tooling filters by
    tenant), else the framework's ops key: a non-canonical key cannot be put on an envelope."""
    if record.key is not None:
        try:
            text = record.key.decode("utf-8")
        except UnicodeDecodeError:
            return OPS_KEY
        parsed = parse_key(text)
        if isinstance(parsed, Key):
            return parsed
    return OPS_KEY


def dead_letter_record(record: Record, rejection: Rejection, *, group: str, producer: str,
                       bare: bool | None = None) -> DeadLetterRecord:
    """The envelope, Kafka key and headers to write for ``record``, refused for ``rejection``.

    The framework's ``pit.*`` headers come first and are the only ones with those names: the
    source record's headers follow renamed ``pit.source.header.<name>``, so a forged
    ``pit.reason`` on the input cannot pose as ours. ``bare`` leaves the value, the source headers
    and a source key longer than a canonical one out, naming their size in
    ``pit.source.omitted_bytes``: a dead letter that small is never refused for its size. By
    default (``None``) a dead letter is bare when they come to more than ``MAX_CARRIED_BYTES``.
    """
    key_bytes = len(record.key or b"")
    carried = key_bytes + len(record.value or b"") + sum(len(name) + len(value) for name, value in record.headers)
    if bare is None:
        bare = carried > MAX_CARRIED_BYTES
    coordinates = f"{record.topic}/{record.partition}/{record.offset}"
    key = _dead_letter_key(record)
    # The source record's time keeps a re-run's dead letter identical to the first one.
    ts = record_time(record.timestamp_ms)
    reason = rejection.reason.value
    env = wrap_bytes(
        BytesValue(value=b"" if bare else record.value or b"").SerializeToString(),
        PAYLOAD_TYPE,
        key=key,
        event_id=derive_event_id(group, coordinates, "dead_letter"),
        producer=producer,
        ts=ts,
        topic=DEAD_LETTER_TOPIC,
    )
    env.event_type = f"dead_letter.{reason}"
    env.idempotency_key = coordinates
    env.dedupe_scope = group
    headers: Headers = [
        (REASON, reason.encode()),
        (DETAIL, rejection.detail[:_MAX_DETAIL].encode("utf-8", "replace")),
        (SOURCE_TOPIC, record.topic.encode()),
        (SOURCE_PARTITION, str(record.partition).encode()),
        (SOURCE_OFFSET, str(record.offset).encode()),
        (GROUP, group.encode()),
    ]
    if record.key is not None and not (bare and key_bytes > MAX_KEY_CHARS):
        headers.append((SOURCE_KEY, record.key))
    if record.value is None:
        headers.append((SOURCE_VALUE_NULL, b"1"))
    if bare:
        headers.append((SOURCE_OMITTED, str(carried).encode()))
    else:
        headers.extend((SOURCE_HEADER_PREFIX + name, value) for name, value in record.headers)
    return DeadLetterRecord(env.SerializeToString(), key.text.encode(), headers)


@dataclass(frozen=True, slots=True)
class ReadDeadLetter:
    envelope: EventEnvelope
    value: bytes


def read_dead_letter(value: bytes) -> ReadDeadLetter:
    """The envelope of a dead letter and the refused record's value bytes it carries."""
    env = EventEnvelope.FromString(value)
    if env.payload_type != PAYLOAD_TYPE:
        raise ContractError(f"dead letter carries {env.payload_type!r}, not {PAYLOAD_TYPE}")
    return ReadDeadLetter(env, BytesValue.FromString(env.payload).value)
