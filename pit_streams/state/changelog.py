"""Changelog records: how a partition store travels through Kafka and comes back.

One compacted topic per consumer group, ``pit.v1.runtime.{group}_changelog``, partition N
mirroring source partition N. Every value is an envelope (contract 1.1). The Kafka record key
says what a record is, and each record is complete on its own, so whatever the log cleaner keeps
(the latest committed record of each key) is a correct state (docs/adr/0003-state-changelog.md):

    k/{canonical}              Struct {name: "int"}            the key's whole state (never a tombstone)
    d/{canonical}/{group id}   ListValue [scope, ids, digests]  event ids one checkpoint processed for the key
    d/{canonical}/{group id}   null                            a tombstone: that group's marks expired
    o/{source topic}           Int64Value                      next source offset the state reflects

Records are written in Kafka transactions together with the group's offsets, and read back
with ``read_committed``: a checkpoint is all there or not at all, and a fenced owner's writes
never become visible.

A mark record's ListValue holds string columns, one triple per dedupe scope: the scope, its event
ids joined by 0x1f, their payload digests joined by 0x1f, in the same order (the contract refuses
control characters in ids and scopes; digests are hex). The fold then costs one parse and a few
C-level splits per record, not three protobuf ``Value`` objects per mark. Records written before
issue 12 (a ListValue of ``[scope, id, digest]`` ListValues) are still read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import chain
from typing import Protocol

from google.protobuf.message import DecodeError
from google.protobuf.struct_pb2 import ListValue, Struct
from google.protobuf.timestamp_pb2 import Timestamp
from google.protobuf.wrappers_pb2 import Int64Value
from pit.envelope.v1.envelope_pb2 import EventEnvelope

from pit_streams.contract import Key, derive_event_id, parse_key, validate, wrap
from pit_streams.contract.naming import changelog_topic
from pit_streams.state.store import StoreChanges, mark_prefix

__all__ = ["changelog_topic"]

# The changelog's own bookkeeping (source offsets) belongs to no tenant.
_RUNTIME_KEY = Key(venue="pit-streams")
# Bound one dedupe record well inside the broker's 1 MiB default.
MARKS_PER_RECORD = 1000
MARK_BYTES_PER_RECORD = 256 * 1024
_SEP = "\x1f"
_BSEP = b"\x1f"

ChangelogWrite = tuple[bytes, bytes | None]  # (record key, value); None is a tombstone


def key_state_record(key: Key, state: Mapping[str, int], *, cause: str, producer: str, ts: Timestamp) -> ChangelogWrite:
    record_key = f"k/{key}"
    body = Struct()
    for name, value in sorted(state.items()):
        body.fields[name].string_value = str(value)
    env = wrap(body, key=key, event_id=derive_event_id(producer, cause, record_key), producer=producer, ts=ts,
               causation_id=cause)
    return record_key.encode(), env.SerializeToString()


def mark_records(
    key: Key, marks: list[tuple[str, str, str]], *, producer: str, ts: Timestamp
) -> list[tuple[str, bytes, list[tuple[str, str, str]]]]:
    """Records (key, value, the marks it holds) for ``marks`` (scope, event id, digest) of one key,
    at most ``MARKS_PER_RECORD`` each.

    A record is named after its first id and the checkpoint's time, so a mark made again after
    its expiry gets a new name and the expiry's tombstone of the old name cannot erase it.
    """
    out: list[tuple[str, bytes, list[tuple[str, str, str]]]] = []
    stamp = ts.ToMilliseconds()
    for chunk in _chunks(marks):
        record_key = f"d/{key}/{derive_event_id(producer, chunk[0][1], stamp)}"
        body = ListValue()
        add = body.values.add
        for scope, ids, digests in _columns(chunk):
            add().string_value = scope
            add().string_value = _SEP.join(ids)
            add().string_value = _SEP.join(digests)
        env = wrap(body, key=key, event_id=derive_event_id(producer, record_key, 0), producer=producer, ts=ts)
        out.append((record_key, env.SerializeToString(), chunk))
    return out


def _columns(marks: list[tuple[str, str, str]]) -> list[tuple[str, list[str], list[str]]]:
    """(scope, its ids, their digests) per distinct scope, in first-seen order."""
    scopes, ids, digests = zip(*marks, strict=True)
    if scopes.count(scopes[0]) == len(scopes):  # the common case: one scope per key
        return [(scopes[0], list(ids), list(digests))]
    out: dict[str, tuple[str, list[str], list[str]]] = {}
    for scope, event_id, digest in marks:
        column = out.get(scope)
        if column is None:
            column = out[scope] = (scope, [], [])
        column[1].append(event_id)
        column[2].append(digest)
    return list(out.values())


def _mark_bytes(mark: tuple[str, str, str]) -> int:
    # Counts the scope per mark (an over-estimate) and two separators; protobuf framing is per scope.
    return len(mark[0].encode()) + len(mark[1].encode()) + len(mark[2].encode()) + 2


def _chunks(marks: list[tuple[str, str, str]]) -> list[list[tuple[str, str, str]]]:
    if len(marks) <= MARKS_PER_RECORD and len("".join(chain.from_iterable(marks)).encode()) + 2 * len(marks) \
            <= MARK_BYTES_PER_RECORD:
        return [marks]  # the common case, measured in one pass of C
    chunks: list[list[tuple[str, str, str]]] = [[]]
    size = 0
    for mark in marks:
        mark_bytes = _mark_bytes(mark)
        if chunks[-1] and (len(chunks[-1]) >= MARKS_PER_RECORD or size + mark_bytes > MARK_BYTES_PER_RECORD):
            chunks.append([])
            size = 0
        chunks[-1].append(mark)
        size += mark_bytes
    return chunks


def offset_record(topic: str, next_offset: int, *, producer: str, ts: Timestamp) -> ChangelogWrite:
    record_key = f"o/{topic}"
    env = wrap(Int64Value(value=next_offset), key=_RUNTIME_KEY,
               event_id=derive_event_id(producer, f"{record_key}@{next_offset}", 0), producer=producer, ts=ts)
    return record_key.encode(), env.SerializeToString()


class ChangelogRecord(Protocol):
    key: bytes | None
    value: bytes | None


@dataclass
class Restored:
    changes: StoreChanges
    unreadable: int = 0


def restore_changes(records: Iterable[ChangelogRecord], ttl_ms: int) -> Restored:
    """Fold committed changelog records, in offset order, into store changes.

    Each record stands alone, so the fold needs no grouping: the latest record of a key wins.
    Unreadable records are skipped and counted, never fatal.
    """
    restored = Restored(StoreChanges())
    changes = restored.changes
    for record in records:
        raw_key, raw_value = record.key, record.value
        text = raw_key.decode("utf-8", "replace") if raw_key is not None else ""
        kind = text[:2]
        if kind == "d/" and raw_value is None:
            group = changes.mark_groups.pop(text, None)
            if group is None:
                changes.forgotten_groups.add(text)
                continue
            expiry, covered = group
            marks = changes.restored_marks
            for mk in covered:  # unless a later group made the mark again
                if (raw := marks.get(mk)) is not None and int(raw[:raw.index(b" ")]) <= expiry:
                    del marks[mk]
            continue
        env = _parse(raw_value)
        if env is None:
            restored.unreadable += 1
            continue
        if kind == "k/" and _fold_state(text[2:], env, changes):
            continue
        if kind == "d/" and _fold_marks(text, env, changes, ttl_ms):
            continue
        if kind == "o/" and _fold_offset(text[2:], env, changes):
            continue
        restored.unreadable += 1
    return restored


def _fold_state(key: str, env: EventEnvelope, changes: StoreChanges) -> bool:
    body = Struct()
    if not _decode(body, env.payload) or not isinstance(parse_key(key, allow_venue=True), Key):
        return False
    try:
        changes.key_states[key] = {name: int(v.string_value) for name, v in body.fields.items()}
    except ValueError:
        return False
    return True


def _fold_marks(clkey: str, env: EventEnvelope, changes: StoreChanges, ttl_ms: int) -> bool:
    body = ListValue()
    if not _decode(body, env.payload):
        return False
    columns = _dense_columns(body)
    if columns is None:
        columns = _old_columns(body)
        if columns is None:
            return False
    # Folded even when expired already: the next checkpoint's sweep then tombstones the record.
    expiry = env.ts.ToMilliseconds() + ttl_ms
    head, tail = b"%d " % expiry, b" " + env.key.encode()
    covered: list[bytes] = []
    # Check every column before folding any, so a malformed record leaves nothing behind.
    split = [(scope, ids.encode().split(_BSEP), digests.encode()) for scope, ids, digests in columns]
    if any(len(ids) != digests.count(_BSEP) + 1 for _, ids, digests in split):
        return False
    for scope, ids, digests in split:
        prefix = mark_prefix(env.tenant, scope)
        # Built by one join and one split each (C loops): prefix + id, and "expiry digest key".
        mks = (prefix + (_BSEP + prefix).join(ids)).split(_BSEP)
        values = (head + digests.replace(_BSEP, tail + _BSEP + head) + tail).split(_BSEP)
        changes.restored_marks.update(zip(mks, values, strict=True))
        covered.extend(mks)
    changes.mark_groups[clkey] = (expiry, covered)
    changes.forgotten_groups.discard(clkey)
    return True


def marked_ids(payload: bytes) -> list[tuple[str, str]]:
    """(scope, event id) of every mark a mark record's payload holds, in either format (for
    tools and tests: the format is this module's to know)."""
    body = ListValue()
    if not _decode(body, payload):
        return []
    columns = _dense_columns(body) or _old_columns(body) or []
    return [(scope, event_id) for scope, ids, _ in columns for event_id in ids.split(_SEP)]


def _dense_columns(body: ListValue) -> list[tuple[str, str, str]] | None:
    """The (scope, ids, digests) string triples of a dense record; None if it is not one."""
    values = body.values
    if not values or len(values) % 3 or any(v.WhichOneof("kind") != "string_value" for v in values):
        return None
    texts = [v.string_value for v in values]
    return [(texts[i], texts[i + 1], texts[i + 2]) for i in range(0, len(texts), 3)]


def _old_columns(body: ListValue) -> list[tuple[str, str, str]] | None:
    """A pre-issue-12 record (ListValue of [scope, id, digest] ListValues) as dense columns."""
    by_scope: dict[str, tuple[list[str], list[str]]] = {}
    for item in body.values:
        parts = [v.string_value for v in item.list_value.values]
        if len(parts) != 3 or _SEP in parts[1] or _SEP in parts[2]:
            return None
        column = by_scope.setdefault(parts[0], ([], []))
        column[0].append(parts[1])
        column[1].append(parts[2])
    return [(scope, _SEP.join(ids), _SEP.join(digests)) for scope, (ids, digests) in by_scope.items()]


def _fold_offset(topic: str, env: EventEnvelope, changes: StoreChanges) -> bool:
    body = Int64Value()
    if not _decode(body, env.payload):
        return False
    changes.offsets[topic] = body.value
    # Offset records carry their checkpoint's event-time clock: a restored partition resumes it.
    changes.clock_ms = max(changes.clock_ms, env.ts.ToMilliseconds())
    return True


def _parse(raw: bytes | None) -> EventEnvelope | None:
    if raw is None:
        return None
    env = EventEnvelope()
    try:
        env.ParseFromString(raw)
    except (DecodeError, ValueError):
        return None
    ok = validate(env, None, check_record_key=False, require_payload=False, allow_venue=True)
    return env if isinstance(ok, Key) else None


def _decode(message: Int64Value | ListValue | Struct, payload: bytes) -> bool:
    try:
        message.ParseFromString(payload)
    except (DecodeError, ValueError):
        return False
    return True
