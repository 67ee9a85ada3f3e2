"""The scenarios' input records: valid trade fills (``apps.tradefill_producer.iter_fills``,
enveloped exactly as ``pit_streams.Producer`` does), and the hostile mix.

Every record carries headers the dead-letter topic gives back (it keeps the source headers):
``chaos.run`` (which run produced it), ``chaos.seq`` (its index), ``chaos.kind`` (what was
generated) and ``chaos.expect`` (``ok`` | ``dup`` | the ``pit.reason`` expected), the latter
computed with ``bench.chaos.oracle`` — ``pit_streams.contract.unwrap`` on the very bytes.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from google.protobuf.timestamp_pb2 import Timestamp
from pit.envelope.v1.envelope_pb2 import EventEnvelope
from pit.events.v1.events_pb2 import NAVUpdateEvent, TradeFillEvent

import pit_streams
from apps.tradefill_producer import iter_fills
from bench.chaos.oracle import Oracle
from pit_streams.transport.memory import MemoryBroker, MemoryTransport

RUN_HEADER = "chaos.run"
SEQ_HEADER = "chaos.seq"
KIND_HEADER = "chaos.kind"
EXPECT_HEADER = "chaos.expect"
OVERSIZED_BYTES = 900 * 1024  # the broker's max message size is ~1 MB
# Between librdkafka's default producer limit (message.max.bytes 1,000,000 — also the workers')
# and the broker's (message.max.bytes 1,048,588): a record the broker accepts from a producer
# configured for it, but whose dead-letter copy (the same value plus headers) a worker cannot send.
NEAR_LIMIT_BYTES = 1_030_000
# The broker's own limit (message.max.bytes default: 1 MiB + 12), on the whole record batch.
BROKER_MAX_BATCH_BYTES = 1_048_588
# A record batch this close under the broker's limit is accepted, but its dead-letter copy (same
# key and value, the source headers plus ~200 B of pit.* headers) cannot be: no transport can.
AT_LIMIT_MARGIN = 100
FEED_MAX_MESSAGE_BYTES = 2_000_000  # the feed leaves the judgement to the broker


def _zigzag_len(n: int) -> int:
    z, size = (n << 1) ^ (n >> 63), 1
    while z >= 0x80:
        z >>= 7
        size += 1
    return size


def batch_bytes(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> int:
    """Bytes of a one-record, uncompressed v2 record batch: what the broker compares with its limit."""
    k, v = key or b"", value or b""
    body = 3 + _zigzag_len(len(k) if key is not None else -1) + len(k)
    body += _zigzag_len(len(v) if value is not None else -1) + len(v) + _zigzag_len(len(headers))
    for name, hv in headers:
        body += _zigzag_len(len(name.encode())) + len(name.encode()) + _zigzag_len(len(hv)) + len(hv)
    return 61 + _zigzag_len(body) + body


@dataclass(slots=True)
class InputRecord:
    key: bytes | None
    value: bytes | None
    kind: str
    expect: str = ""
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def _enveloper() -> pit_streams.Producer:
    # Only ``envelope_bytes`` is used: the same envelopes the platform producer sends.
    return pit_streams.Producer("chaos-feed", version="1.0.0", transport=MemoryTransport(MemoryBroker()))


def valid_fills(*, tenant: str, series: str, cells: int, seed: int, run_id: str,
                step_ms: int = 1) -> Iterator[tuple[bytes, bytes]]:
    """Endless ``(record key, envelope bytes)`` of valid fills with simulated event times,
    ``step_ms`` apart (dedupe TTLs run on event time: docs/adr/0008-verification.md)."""
    producer = _enveloper()
    start_ms = int(time.time() * 1000)
    for key, fill in iter_fills(tenants=[tenant], series=[series], cells=cells, seed=seed, run_id=run_id,
                                start_ms=start_ms, step_ms=step_ms):  # fmt: skip
        yield producer.envelope_bytes("pit.v1.exec.trade_fill", fill, key=key, event_id=fill.event_id, ts=fill.ts)


def stamp(records: list[InputRecord], run_id: str) -> list[InputRecord]:
    """Judge every record in order (expectation) and attach the chaos headers."""
    oracle = Oracle()
    for seq, rec in enumerate(records):
        rec.expect = oracle.judge(rec.key, rec.key, rec.value).expect
        rec.headers = [(RUN_HEADER, run_id.encode()), (SEQ_HEADER, str(seq).encode()),
                       (KIND_HEADER, rec.kind.encode()), (EXPECT_HEADER, rec.expect.encode())]  # fmt: skip
    return records


def valid_records(count: int, *, tenant: str, series: str, cells: int, seed: int, run_id: str) -> list[InputRecord]:
    fills = valid_fills(tenant=tenant, series=series, cells=cells, seed=seed, run_id=run_id)
    return stamp([InputRecord(k, v, "valid") for k, v in (next(fills) for _ in range(count))], run_id)


# --------------------------------------------------------------------------- hostile


def _env(value: bytes) -> EventEnvelope:
    env = EventEnvelope()
    env.ParseFromString(value)
    return env


def _rehash(env: EventEnvelope) -> None:
    env.payload_sha256 = hashlib.sha256(env.payload).hexdigest()


def _padded(env: EventEnvelope, size: int) -> EventEnvelope:
    """``env`` with its payload grown by a ``size``-character ``strategy_ref`` (still valid)."""
    fill = TradeFillEvent.FromString(env.payload)
    fill.strategy_ref = "p" * size
    env.payload = fill.SerializeToString(deterministic=True)
    _rehash(env)
    return env


def _bitflip(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
    return bytes(b)


def hostile_records(count: int, *, tenant: str, series: str, cells: int, seed: int, run_id: str,
                    oversized: int = 2, handler_errors: int = 10) -> list[InputRecord]:  # fmt: skip
    """``count`` records: about half valid fills, the rest every kind of bad record (plus
    ``oversized`` of each 900 KB kind and ``handler_errors`` fills that overflow the handler's
    int64 state), shuffled together. Expectations are attached by ``stamp``."""
    rng = random.Random(seed)
    fills = valid_fills(tenant=tenant, series=series, cells=cells, seed=seed, run_id=run_id)
    other_tenant = f"{tenant}x"
    produced: list[tuple[bytes, bytes]] = []  # valid (key, value) sent so far, for duplicates

    def fresh() -> tuple[bytes, bytes, EventEnvelope]:
        k, v = next(fills)
        return k, v, _env(v)

    def valid() -> InputRecord:
        k, v = next(fills)
        produced.append((k, v))
        return InputRecord(k, v, "valid")

    def dup_exact() -> InputRecord:
        if not produced:
            return valid()
        k, v = rng.choice(produced[-50:] if rng.random() < 0.5 else produced)
        return InputRecord(k, v, "dup-exact")

    def dup_rewrapped() -> InputRecord:  # same event_id, different bytes (producer, ts)
        if not produced:
            return valid()
        k, v = rng.choice(produced)
        env = _env(v)
        env.producer = "chaos-replayer@9.9.9"
        env.ts.FromMilliseconds(env.ts.ToMilliseconds() + 1)
        return InputRecord(k, env.SerializeToString(), "dup-rewrapped")

    def garbage() -> InputRecord:
        k, _, _ = fresh()
        return InputRecord(k, rng.randbytes(rng.randint(1, 2000)), "garbage-bytes")

    def text() -> InputRecord:
        k, _, env = fresh()
        return InputRecord(k, f'{{"event_id": "{env.event_id}", "qty": 1}}'.encode(), "json-text")

    def empty() -> InputRecord:
        k, _, _ = fresh()
        return InputRecord(k, b"" if rng.random() < 0.5 else None, "empty-value")

    def truncated() -> InputRecord:
        k, v, _ = fresh()
        return InputRecord(k, v[: rng.randint(1, len(v) - 1)], "truncated")

    def bitflip() -> InputRecord:
        k, v, _ = fresh()
        return InputRecord(k, _bitflip(v, rng), "bit-flipped")

    def no_key() -> InputRecord:
        _, v, _ = fresh()
        return InputRecord(None, v, "no-record-key")

    def wrong_key() -> InputRecord:
        _, v, env = fresh()
        cell = f"{int(env.cell) % cells + 1:04d}"
        return InputRecord(f"t/{env.tenant}/s/{env.series}/c/{cell}".encode(), v, "wrong-record-key")

    def garbage_key() -> InputRecord:
        _, v, _ = fresh()
        return InputRecord(rng.randbytes(rng.randint(1, 40)), v, "garbage-record-key")

    def cross_tenant() -> InputRecord:  # envelope key names another tenant than its fields
        _, _, env = fresh()
        env.key = f"t/{other_tenant}/s/{env.series}/c/{env.cell}"
        return InputRecord(env.key.encode(), env.SerializeToString(), "cross-tenant-key")

    def cross_tenant_fields() -> InputRecord:  # fields name another tenant than the key
        k, _, env = fresh()
        env.tenant = other_tenant
        return InputRecord(k, env.SerializeToString(), "cross-tenant-fields")

    def key_invalid() -> InputRecord:
        _, _, env = fresh()
        env.key = rng.choice([f"t/{env.tenant}", "venue/sim-a", f"t/{env.tenant}/s//c/{env.cell}",
                              f"t/{env.tenant}/s/{env.series}/c/{env.cell}/x", "tenant=x"])  # fmt: skip
        return InputRecord(env.key.encode(), env.SerializeToString(), "invalid-key")

    def missing() -> InputRecord:
        k, _, env = fresh()
        env.ClearField(rng.choice(["ts", "event_id", "producer", "payload_type", "tenant", "series", "payload"]))
        return InputRecord(k, env.SerializeToString(), "missing-field")

    def wrong_type() -> InputRecord:
        k, _, env = fresh()
        if rng.random() < 0.5:
            env.payload = NAVUpdateEvent(nav_usd_micros=1).SerializeToString(deterministic=True)
            _rehash(env)
        env.payload_type = rng.choice(["pit.events.v1.NAVUpdateEvent", "pit.events.v1.TradeFill", "", "x" * 300])
        return InputRecord(k, env.SerializeToString(), "wrong-payload-type")

    def bad_hash() -> InputRecord:
        k, _, env = fresh()
        env.payload_sha256 = hashlib.sha256(env.payload + b"!").hexdigest()
        return InputRecord(k, env.SerializeToString(), "bad-hash")

    def undecodable() -> InputRecord:
        k, _, env = fresh()
        env.payload = rng.choice([b"\xff" * rng.randint(1, 64), b"\x0a\xff\xff\xff\xff\x0f",
                                  rng.randbytes(rng.randint(1, 200))])  # fmt: skip
        _rehash(env)
        return InputRecord(k, env.SerializeToString(), "undecodable-payload")

    def oversized_valid() -> InputRecord:
        k, _, env = fresh()
        env.producer = "p" * OVERSIZED_BYTES
        return InputRecord(k, env.SerializeToString(), "oversized-valid")

    def oversized_bad_hash() -> InputRecord:
        k, _, env = fresh()
        env.producer = "p" * OVERSIZED_BYTES
        env.payload_sha256 = "0" * 64
        return InputRecord(k, env.SerializeToString(), "oversized-bad-hash")

    def oversized_payload() -> InputRecord:
        k, _, env = fresh()
        env.payload = rng.randbytes(OVERSIZED_BYTES)
        _rehash(env)
        return InputRecord(k, env.SerializeToString(), "oversized-undecodable")

    def payload_mismatch() -> InputRecord:  # the payload names another tenant than its envelope
        k, _, env = fresh()
        fill = TradeFillEvent.FromString(env.payload)
        fill.tenant_id = other_tenant
        env.payload = fill.SerializeToString(deterministic=True)
        _rehash(env)
        return InputRecord(k, env.SerializeToString(), "payload-field-mismatch")

    def bad_characters() -> InputRecord:  # newline, NUL or a bidi override in an id
        k, _, env = fresh()
        env.event_id = env.event_id[:8] + rng.choice(["\n", "\x00", "\u202e", "\u2066"]) + env.event_id[8:]
        return InputRecord(k, env.SerializeToString(), "bad-characters")

    def too_long() -> InputRecord:  # an id copied into every output and changelog key
        k, _, env = fresh()
        env.event_id = env.event_id + "-" + "x" * rng.randint(200, 600_000)
        return InputRecord(k, env.SerializeToString(), "field-too-long")

    def bad_producer() -> InputRecord:
        k, _, env = fresh()
        env.producer = rng.choice(["tradefill-producer", "@1.0", "name@"])
        return InputRecord(k, env.SerializeToString(), "bad-producer")

    def id_conflict() -> InputRecord:  # a processed event_id again, with another payload
        if not produced:
            return valid()
        k, v = rng.choice(produced)
        env = _env(v)
        fill = TradeFillEvent.FromString(env.payload)
        fill.qty += 1
        env.payload = fill.SerializeToString(deterministic=True)
        _rehash(env)
        return InputRecord(k, env.SerializeToString(), "event-id-conflict")

    reused: set[str] = set()

    def other_tenant_same_id() -> InputRecord:  # another tenant's event reusing a processed id: its own event
        # Each id reused once: twice would be one tenant repeating an id on two keys (two partitions),
        # which per-partition dedupe cannot see and the checker could not tell apart.
        ids = [e for _, v in produced if (e := _env(v).event_id) not in reused]
        if not ids:
            return valid()
        _, _, env = fresh()
        env.event_id = rng.choice(ids)
        reused.add(env.event_id)
        fill = TradeFillEvent.FromString(env.payload)
        fill.event_id = env.event_id
        fill.tenant_id = ""
        env.tenant = other_tenant
        env.key = f"t/{other_tenant}/s/{env.series}/c/{env.cell}"
        env.payload = fill.SerializeToString(deterministic=True)
        _rehash(env)
        return InputRecord(env.key.encode(), env.SerializeToString(), "other-tenant-same-id")

    poison_key = f"t/{tenant}/s/{series}/c/overflow"

    def handler_error() -> InputRecord:
        producer = _enveloper()
        ts = Timestamp()
        ts.FromMilliseconds(int(time.time() * 1000))
        fill = TradeFillEvent(event_id=f"overflow-{run_id}-{rng.getrandbits(64):x}", venue="sim-a",
                              instrument="BTC-USD", qty=2**40, price_micros=2**40, ts=ts)  # fmt: skip
        k, v = producer.envelope_bytes("pit.v1.exec.trade_fill", fill, key=poison_key, event_id=fill.event_id, ts=ts)
        return InputRecord(k, v, "handler-overflow")

    weighted = [
        (valid, 50), (dup_exact, 4), (dup_rewrapped, 2), (garbage, 4), (text, 1), (empty, 2), (truncated, 4),
        (bitflip, 6), (no_key, 2), (wrong_key, 2), (garbage_key, 2), (cross_tenant, 3), (cross_tenant_fields, 3),
        (key_invalid, 3), (missing, 3), (wrong_type, 3), (bad_hash, 3), (undecodable, 3),
        (payload_mismatch, 2), (bad_characters, 2), (too_long, 1), (bad_producer, 2), (id_conflict, 2),
        (other_tenant_same_id, 2),
    ]  # fmt: skip
    makers = [m for m, _ in weighted]
    weights = [w for _, w in weighted]
    specials = ([oversized_valid, oversized_bad_hash, oversized_payload] * oversized) + [handler_error] * handler_errors
    slots = set(rng.sample(range(count), min(len(specials), count)))
    out: list[InputRecord] = []
    for i in range(count):
        out.append(specials.pop()() if i in slots and specials else rng.choices(makers, weights)[0]())
    return stamp(out, run_id)


def near_limit_records(count: int, *, tenant: str, series: str, cells: int, seed: int, run_id: str,
                       poison: int = 1) -> list[InputRecord]:  # fmt: skip
    """Valid fills with, a third in, one valid ~1.03 MB envelope (a 1,030,000-character
    ``strategy_ref`` in its payload: accepted, its output is small; envelope fields are bounded,
    so a long ``producer`` would be refused as ``field_too_long``); half-way, ``poison`` invalid
    ones of the same size (bad ``payload_sha256``: to be dead-lettered, value and key byte for byte); and at
    three quarters one invalid record whose batch is ``AT_LIMIT_MARGIN`` bytes under the
    broker's limit (its dead-letter copy is over it, whichever client sends it)."""
    fills = valid_fills(tenant=tenant, series=series, cells=cells, seed=seed, run_id=run_id)
    out: list[InputRecord] = []
    for i in range(count):
        k, v = next(fills)
        if i == count // 3:
            env = _padded(_env(v), NEAR_LIMIT_BYTES)
            out.append(InputRecord(k, env.SerializeToString(), "near-limit-valid"))
        elif count // 2 <= i < count // 2 + poison:
            env = _padded(_env(v), NEAR_LIMIT_BYTES)
            env.payload_sha256 = "0" * 64
            out.append(InputRecord(k, env.SerializeToString(), "near-limit-bad-hash"))
        elif i == 3 * count // 4:
            env = _env(v)
            env.payload_sha256 = "0" * 64
            out.append(InputRecord(k, env.SerializeToString(), "at-broker-limit-bad-hash"))
        else:
            out.append(InputRecord(k, v, "valid"))
    stamp(out, run_id)
    for rec in out:  # grow the at-limit record to its exact size, now that its headers are known
        if rec.kind == "at-broker-limit-bad-hash":
            env = _env(rec.value or b"")
            target = BROKER_MAX_BATCH_BYTES - AT_LIMIT_MARGIN
            lo, hi = 0, target
            while lo < hi:  # the longest producer string that keeps the batch within the target
                mid = (lo + hi + 1) // 2
                env.producer = "p" * mid
                if batch_bytes(rec.key, env.SerializeToString(), rec.headers) <= target:
                    lo = mid
                else:
                    hi = mid - 1
            env.producer = "p" * lo
            rec.value = env.SerializeToString()
    return out
