"""Well-formed but hostile envelopes: each refused with its own reason, the rest keep flowing (issue 10)."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from pit.envelope.v1.envelope_pb2 import EventEnvelope
from pit.events.v1.events_pb2 import NAVUpdateEvent, TradeFillEvent

import pit_streams
from pit_streams.contract import Key, murmur2_partition, wrap
from pit_streams.testing import TestHarness

FILLS = "pit.v1.exec.trade_fill"
NAV = "pit.v1.acct.nav_update"
KEY = "t/demo/s/alpha/c/0001"
CELL = Key("demo", "alpha", "0001")


def make_app() -> pit_streams.App:
    app = pit_streams.App("hostile-test", version="1.0.0")

    @app.handler(FILLS, TradeFillEvent, emits={NAV: NAVUpdateEvent})
    def on_fill(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
        cash = ctx.state.get("cash") - fill.qty * fill.price_micros
        ctx.state.put("cash", cash)
        ctx.emit(NAV, NAVUpdateEvent(cash_liquid_usd_micros=cash))

    return app


def hostile(payload: TradeFillEvent | None = None, *, key: Key = CELL,
            **overrides: str) -> bytes:
    """A valid envelope, then the given fields overwritten (no validation on the way)."""
    env = wrap(payload or TradeFillEvent(qty=1, price_micros=1), key=key, event_id="h-1", producer="feed@1.0",
               ts=Timestamp(seconds=1_700_000_000), topic=FILLS)
    for name, value in overrides.items():
        setattr(env, name, value)
    return env.SerializeToString()


def bad_ts(seconds: int, nanos: int = 0) -> bytes:
    """A valid envelope whose ``ts`` is no valid protobuf Timestamp (the wire format admits any int64)."""
    env = EventEnvelope.FromString(hostile())
    env.ts.seconds, env.ts.nanos = seconds, nanos
    return env.SerializeToString()


CASES = [
    ("ts after year 9999", bad_ts(253402300800), KEY, "bad_timestamp"),
    ("ts before year 1", bad_ts(-62135596801), KEY, "bad_timestamp"),
    ("ts negative nanos", bad_ts(1_700_000_000, -1), KEY, "bad_timestamp"),
    ("ts nanos of a second or more", bad_ts(1_700_000_000, 1_000_000_000), KEY, "bad_timestamp"),
    ("payload tenant", hostile(TradeFillEvent(tenant_id="other")), KEY, "payload_field_mismatch"),
    ("payload series", hostile(TradeFillEvent(series_id="beta")), KEY, "payload_field_mismatch"),
    ("payload cell", hostile(TradeFillEvent(cell_id="0002")), KEY, "payload_field_mismatch"),
    ("payload event_id", hostile(TradeFillEvent(event_id="someone-else")), KEY, "payload_field_mismatch"),
    ("topic", hostile(topic="pit.v1.acct.nav_update"), KEY, "topic_mismatch"),
    ("NUL in key", hostile(key=Key("demo", "alpha", "00\x001")), "t/demo/s/alpha/c/00\x001",
     "bad_characters"),
    ("newline in id", hostile(event_id="a\nb"), KEY, "bad_characters"),
    ("bidi in id", hostile(event_id="abc\u202edef"), KEY, "bad_characters"),
    ("isolate in producer", hostile(producer="feed\u2066@1"), KEY, "bad_characters"),
    ("zero-width in dedupe_scope", hostile(dedupe_scope="s\u200b"), KEY, "bad_characters"),
    ("long event_id", hostile(event_id="e" * 129), KEY, "field_too_long"),
    ("long key", hostile(key=Key("demo", "a" * 600, "0001")), f"t/demo/s/{'a' * 600}/c/0001", "field_too_long"),
    ("long producer", hostile(producer="p@" + "1" * 255), KEY, "field_too_long"),
    ("long causation", hostile(causation_id="c" * 129), KEY, "field_too_long"),
    ("long correlation", hostile(correlation_id="c" * 129), KEY, "field_too_long"),
    ("producer without version", hostile(producer="feed"), KEY, "bad_producer"),
    ("producer with empty version", hostile(producer="feed@"), KEY, "bad_producer"),
]


@pytest.mark.parametrize(("value", "key", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_hostile_envelope_is_dead_lettered_and_the_next_record_flows(
    tmp_path: Path, value: bytes, key: str, reason: str
) -> None:
    async with TestHarness(make_app(), data_dir=tmp_path, catalog=False) as h:
        await h.send(FILLS, value, key=key, run=False)
        good = await h.send(FILLS, TradeFillEvent(qty=1, price_micros=5))
        [dl] = h.dead_letters
        assert dl.reason == reason, dl.detail
        assert dl.value == value
        [(env, _)] = h.outputs(NAV)
        assert env.causation_id == good.event_id


async def test_timestamp_bounds_are_inclusive(tmp_path: Path) -> None:
    async with TestHarness(make_app(), data_dir=tmp_path, catalog=False) as h:
        for seconds, nanos in ((253402300799, 999_999_999), (-62135596800, 0)):
            env = EventEnvelope.FromString(hostile())
            env.ts.seconds, env.ts.nanos, env.event_id = seconds, nanos, f"ts-{seconds}"
            await h.send(FILLS, env.SerializeToString(), key=KEY)
        assert h.dead_letters == [] and h.metrics.processed == 2


async def test_record_timestamp_beyond_protobufs_range_still_dead_letters(tmp_path: Path) -> None:
    async with TestHarness(make_app(), data_dir=tmp_path, catalog=False) as h:
        for ms in (2**62, -(2**62)):
            h.broker.append(FILLS, b"garbage", KEY.encode(), [], timestamp_ms=ms)
        await h.run()
        assert [d.reason for d in h.dead_letters] == ["not_envelope", "not_envelope"]
        assert h.metrics.healthy


async def test_bounds_are_inclusive(tmp_path: Path) -> None:
    """Exactly at each limit is still accepted."""
    value = hostile(event_id="e" * 128, causation_id="c" * 128, correlation_id="c" * 128, producer="p@" + "1" * 254)
    async with TestHarness(make_app(), data_dir=tmp_path, catalog=False) as h:
        await h.send(FILLS, value, key=KEY)
        assert h.dead_letters == [] and len(h.outputs(NAV)) == 1


async def test_matching_payload_fields_and_topic_are_accepted(tmp_path: Path) -> None:
    payload = TradeFillEvent(tenant_id="demo", series_id="alpha", cell_id="0001", event_id="h-1", qty=1)
    async with TestHarness(make_app(), data_dir=tmp_path, catalog=False) as h:
        await h.send(FILLS, hostile(payload), key=KEY)
        assert h.dead_letters == [] and len(h.outputs(NAV)) == 1


async def test_record_on_the_wrong_partition_is_refused_and_its_key_state_stays_right(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    partitions = 4
    right = murmur2_partition(KEY.encode(), partitions)
    wrong = (right + 1) % partitions
    async with TestHarness(make_app(), partitions=partitions, data_dir=tmp_path, catalog=False) as h:
        misplaced = hostile(TradeFillEvent(qty=100, price_micros=1), event_id="misplaced")
        h.broker.append(FILLS, misplaced, KEY.encode(), [], partition=wrong)
        await h.send(FILLS, TradeFillEvent(qty=1, price_micros=5))
        await h.send(FILLS, TradeFillEvent(qty=1, price_micros=5))
        [dl] = h.dead_letters
        assert dl.reason == "wrong_partition"
        assert f"belongs on partition {right} of {partitions}" in dl.detail
        assert h.metrics.rejected["wrong_partition"] == 1
        # The harness places keys like the Java client, so the good records were processed where they live.
        assert {r.partition for r in h.broker.records(FILLS) if r.value != misplaced} == {right}
        assert [n.cash_liquid_usd_micros for _, n in h.outputs(NAV)] == [-5, -10]
    [logged] = [r for r in caplog.records if "dead letter [wrong_partition]" in r.getMessage()]
    assert logged.levelname == "ERROR" and f"{FILLS}[{wrong}]@0" in logged.getMessage()


async def test_venue_key_carrying_a_tenant_is_refused(tmp_path: Path) -> None:
    ops = "pit.v1.ops.example_venue_status"
    app = pit_streams.App("venue-test")
    seen: list[str] = []

    @app.handler(ops, TradeFillEvent)
    def on_status(status: TradeFillEvent, ctx: pit_streams.Context) -> None:
        seen.append(ctx.key.venue)

    venue = Key(venue="x")
    async with TestHarness(app, data_dir=tmp_path, catalog=False) as h:
        await h.send(ops, hostile(key=venue, topic=ops, tenant="demo"), key="venue/x", run=False)
        await h.send(ops, hostile(key=venue, topic=ops, event_id="h-2"), key="venue/x")
        [dl] = h.dead_letters
        assert dl.reason == "key_mismatch" and "venue" in dl.detail
        assert seen == ["x"]


def test_envelope_fixture_is_valid() -> None:
    env = EventEnvelope.FromString(hostile())
    assert env.producer == "feed@1.0" and env.topic == FILLS


async def test_migration_record_with_an_out_of_range_timestamp_is_handled(tmp_path: Path) -> None:
    app = pit_streams.App("hostile-migration", version="1.0.0")
    seen: list[int] = []

    @app.handler(FILLS, TradeFillEvent, emits={NAV: NAVUpdateEvent}, migration_only=True)
    def on_fill(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
        seen.append(fill.qty)
        ctx.emit(NAV, NAVUpdateEvent(cash_liquid_usd_micros=fill.qty))

    from pit_streams.contract.timestamps import timestamp_problem

    async with TestHarness(app, data_dir=tmp_path, catalog=False) as h:
        h.broker.append(FILLS, TradeFillEvent(qty=3).SerializeToString(), KEY.encode(), [], timestamp_ms=2**62)
        await h.run()
        assert seen == [3] and h.metrics.healthy
        [(env, _)] = h.outputs(NAV)
        assert timestamp_problem(env.ts) == ""  # the log's time (the batch clock), clamped into range
