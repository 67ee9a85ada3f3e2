"""Changelog records: how a partition store's changes travel through Kafka and come back.

One compacted topic per consumer group, ``pit.v1.runtime.{group}_changelog``, partition N
mirroring source partition N. Every value is an envelope (contract 1.1) keyed by the
canonical key of the records that caused it; the Kafka record key is the store key, so
compaction keeps the latest value of each (see docs/adr/0003-state-changelog.md).

    s/{canonical}/{name}            Int64Value   the state entry's latest value
    d/{canonical}/{first event id}  ListValue    event ids processed in one batch for that key
    (either key, null value)                     a tombstone: deleted / expired
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from google.protobuf.message import DecodeError
from google.protobuf.struct_pb2 import ListValue
from google.protobuf.timestamp_pb2 import Timestamp
from google.protobuf.wrappers_pb2 import Int64Value
from pit.envelope.v1.envelope_pb2 import EventEnvelope

from pit_streams.contract import Key, derive_event_id, validate, wrap
from pit_streams.contract.envelope import wrap_bytes
from pit_streams.state.store import StoreChanges

_GROUP_RE = re.compile(r"^[a-z][a-z0-9-]*[a-z0-9]$")


def changelog_topic(group: str) -> str:
    """The changelog topic of a consumer group: ``nav-consumer`` -> ``pit.v1.runtime.nav_consumer_changelog``."""
    if not _GROUP_RE.match(group):
        raise ValueError(
            f"consumer group {group!r} must be lower-case letters, digits and '-' (e.g. 'nav-consumer')"
        )
    return f"pit.v1.runtime.{group.replace('-', '_')}_changelog"


def state_record(
    key: Key, store_key: str, value: int | None, *, cause: str, producer: str, ts: Timestamp
) -> tuple[bytes, bytes | None]:
    if value is None:
        return store_key.encode(), None
    env = wrap(
        Int64Value(value=value),
        key=key,
        event_id=derive_event_id(producer, cause, store_key),
        producer=producer,
        ts=ts,
        causation_id=cause,
    )
    return store_key.encode(), env.SerializeToString()


def dedupe_record(key: Key, event_ids: list[str], *, producer: str, ts: Timestamp) -> tuple[str, bytes]:
    # Named after its first id: unique (an id is marked once), and identical if a batch
    # is re-run after a crash, so the re-sent record replaces the first by compaction.
    record_key = f"d/{key}/{event_ids[0]}"
    env = wrap_bytes(
        _list_value_of_strings(event_ids), "google.protobuf.ListValue",
        key=key, event_id=derive_event_id(producer, record_key, 0), producer=producer, ts=ts,
    )
    return record_key, env.SerializeToString()


def _list_value_of_strings(items: list[str]) -> bytes:
    """``ListValue(values=[Value(string_value=s) ...]).SerializeToString()``, without building a
    message object per id (this runs for every processed record). Tested equal to protobuf's."""
    parts: list[bytes] = []
    for item in items:
        data = item.encode()
        inner = b"\x1a" + _varint(len(data)) + data  # Value.string_value = field 3, length-delimited
        parts.append(b"\x0a" + _varint(len(inner)) + inner)  # ListValue.values = field 1
    return b"".join(parts)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


BATCH_HEADER = "pit.batch"
BATCH_END_HEADER = "pit.batch.end"


def batch_headers(batch_id: str, last: bool) -> list[tuple[str, bytes]]:
    """Headers that tie one checkpoint's changelog records together; the last one closes the group."""
    headers = [(BATCH_HEADER, batch_id.encode())]
    if last:
        headers.append((BATCH_END_HEADER, b"1"))
    return headers


class ChangelogRecord(Protocol):
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


@dataclass
class Restored:
    changes: StoreChanges
    unreadable: int = 0
    incomplete: int = 0  # records of a trailing group whose writer died mid-checkpoint, ignored


def restore_changes(records: Iterable[ChangelogRecord], now_ms: int, ttl_ms: int) -> Restored:
    """Fold changelog records, in offset order, into store changes.

    Only whole checkpoint groups count: a writer that died while its group was half
    acknowledged left a partial group, which is dropped — its batch was never committed and
    is re-run (and re-written whole, under a new group) by whoever processes it next.
    Unreadable records are skipped and counted, never fatal.
    """
    restored = Restored(StoreChanges())
    group: list[ChangelogRecord] = []
    group_id: bytes | None = None
    for record in records:
        headers = dict(record.headers)
        batch_id = headers.get(BATCH_HEADER)
        if group and batch_id != group_id:
            # The open group never got its end flag: its writer died and someone re-ran the batch.
            restored.incomplete += len(group)
            group = []
        group.append(record)
        group_id = batch_id
        if batch_id is None or BATCH_END_HEADER in headers:
            restored.unreadable += _fold(group, restored.changes, now_ms, ttl_ms)
            group = []
    restored.incomplete += len(group)
    return restored


def _fold(records: Iterable[ChangelogRecord], changes: StoreChanges, now_ms: int, ttl_ms: int) -> int:
    unreadable = 0
    for record in records:
        raw_key, raw_value = record.key, record.value
        if raw_key is None:
            unreadable += 1
            continue
        key = raw_key.decode("utf-8", "replace")
        if key.startswith("s/"):
            if raw_value is None:
                changes.state[key] = None
                continue
            env = _parse(raw_value)
            wrapper = Int64Value()
            if env is None or not _decode(wrapper, env.payload):
                unreadable += 1
                continue
            changes.state[key] = wrapper.value
        elif key.startswith("d/"):
            if raw_value is None:
                changes.expiry_index.pop(key, None)
                continue
            env = _parse(raw_value)
            ids = ListValue()
            if env is None or not _decode(ids, env.payload):
                unreadable += 1
                continue
            expiry = env.ts.ToMilliseconds() + ttl_ms
            if expiry <= now_ms:
                continue
            id_list = [v.string_value for v in ids.values]
            for event_id in id_list:
                changes.seen[event_id] = expiry
            changes.expiry_index[key] = (expiry, id_list)
        else:
            unreadable += 1
    return unreadable


def _parse(raw: bytes) -> EventEnvelope | None:
    env = EventEnvelope()
    try:
        env.ParseFromString(raw)
    except (DecodeError, ValueError):
        return None
    ok = validate(env, None, check_record_key=False, require_payload=False)
    return env if isinstance(ok, Key) else None


def _decode(message: Int64Value | ListValue, payload: bytes) -> bool:
    try:
        message.ParseFromString(payload)
    except (DecodeError, ValueError):
        return False
    return True
