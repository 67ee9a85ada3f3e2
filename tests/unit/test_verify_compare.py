"""verify and attest over the in-memory transport: the production loop's outputs, replayed."""

from __future__ import annotations

import time
from pathlib import Path

from pit.envelope.v1.envelope_pb2 import EventEnvelope
from pit.events.v1.events_pb2 import NAVUpdateEvent, TradeFillEvent

import pit_streams
from apps.nav import FILLS, NAV, build_app
from pit_streams.contract.signing import Signer
from pit_streams.testing import Sent, TestHarness
from pit_streams.transport.memory import MemoryTransport
from pit_streams.verify.attest import attest
from pit_streams.verify.command import format_report, summary, verify_app
from pit_streams.verify.ranges import OffsetRange, total_root

CELLS = ["t/demo/s/alpha/c/0001", "t/demo/s/alpha/c/0002", "t/acme/s/beta/c/0007"]


async def stamped(h: TestHarness, payload: TradeFillEvent | bytes, key: str, **kw: object) -> Sent:
    """Send as Kafka would store it: with a broker timestamp (dead letters and the clock use it)."""
    sent = await h.send(FILLS, payload, key=key, run=False, **kw)  # type: ignore[arg-type]
    log = h.broker.topics[FILLS]
    rec = next(r for part in log for r in part if r.value == sent.value and r.timestamp_ms == 0)
    log[rec.partition].remove(rec)
    h.broker.append(FILLS, rec.value, rec.key, [], partition=rec.partition, timestamp_ms=int(time.time() * 1000))
    await h.run()
    return sent


async def slice_of(h: TestHarness) -> None:
    for i in range(9):
        await stamped(h, TradeFillEvent(instrument="BTC", qty=1 + i, price_micros=1_000_000), CELLS[i % 3])
    await stamped(h, b"not an envelope", CELLS[0])  # a dead letter the replay must match
    sent = h.sent[0]
    h.broker.append(FILLS, sent.value, sent.key, [], timestamp_ms=int(time.time() * 1000))  # a redelivery
    await h.run()


async def test_the_replay_of_a_slice_matches_every_output_and_dead_letter(tmp_path: Path) -> None:
    app = build_app("verify-nav")
    async with TestHarness(app, partitions=2, data_dir=tmp_path, catalog=False) as h:
        await slice_of(h)
        report = await verify_app(app, MemoryTransport(h.broker))
    assert report.ok, format_report(report)
    assert sum(p.matched for p in report.partitions.values()) == 9
    assert sum(p.dead_letters_matched for p in report.partitions.values()) == 1
    assert sum(p.inputs for p in report.partitions.values()) == 11
    assert summary(report).startswith("verify OK: 11 input(s) replayed, 9 output(s) and 1 dead letter(s) matched")


async def test_a_forged_output_reusing_a_real_id_is_named_with_a_field_diff(tmp_path: Path) -> None:
    app = build_app("verify-nav")
    async with TestHarness(app, partitions=2, data_dir=tmp_path, catalog=False) as h:
        await slice_of(h)
        real = h.broker.records(NAV)[4]
        forged = EventEnvelope.FromString(real.value or b"")
        nav = NAVUpdateEvent.FromString(forged.payload)
        nav.nav_usd_micros += 1_000_000_000
        forged.payload = nav.SerializeToString()
        h.broker.append(NAV, forged.SerializeToString(), real.key, [])
        report = await verify_app(app, MemoryTransport(h.broker))
    assert not report.ok
    [mismatch] = report.mismatches
    assert mismatch.event_id == forged.event_id
    assert any(line.startswith("payload.nav_usd_micros:") for line in mismatch.diff), mismatch.diff
    assert forged.event_id in "\n".join(format_report(report))


async def test_a_missing_output_and_a_stray_one_are_reported(tmp_path: Path) -> None:
    app = build_app("verify-nav")
    async with TestHarness(app, data_dir=tmp_path, catalog=False) as h:
        await slice_of(h)
        outputs = h.broker.topics[NAV][0]
        dropped = outputs.pop(2)
        stray = EventEnvelope.FromString(outputs[0].value or b"")
        stray.event_id = "not-derived-by-the-app"
        h.broker.append(NAV, stray.SerializeToString(), outputs[0].key, [])
        report = await verify_app(app, MemoryTransport(h.broker))
    dropped_id = EventEnvelope.FromString(dropped.value or b"").event_id
    assert report.missing_ids == [dropped_id] and report.unexpected_ids == ["not-derived-by-the-app"]
    assert report.partitions[0].missing == 1 and report.partitions[0].unexpected == 1


async def test_a_handler_reading_the_clock_is_reported_non_deterministic(tmp_path: Path) -> None:
    app = pit_streams.App("clock-reader", version="1.0.0")

    @app.handler(FILLS, TradeFillEvent, emits={NAV: NAVUpdateEvent})
    def on_fill(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
        ctx.emit(NAV, NAVUpdateEvent(nav_usd_micros=time.time_ns()))  # the wall clock: not reproducible

    async with TestHarness(app, data_dir=tmp_path, catalog=False) as h:
        await stamped(h, TradeFillEvent(qty=1), CELLS[0])
        report = await verify_app(app, MemoryTransport(h.broker))
    assert report.nondeterministic is not None
    assert report.nondeterministic.event_id == h.outputs(NAV)[0][0].event_id
    assert report.nondeterministic.diff[0].startswith("payload.nav_usd_micros:")
    assert summary(report).startswith("verify NON-DETERMINISTIC")


async def test_a_signing_worker_still_verifies_and_a_wrong_key_is_caught(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from pit_streams.contract.signing import verify_signature

    app = build_app("verify-nav")
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    async with TestHarness(app, data_dir=tmp_path, catalog=False) as h:
        h.worker._processor._send = Signer(key).wrap_send(h.worker.transport.send)
        await slice_of(h)
        assert all(env.signature for env, _ in h.outputs(NAV))
        good = await verify_app(app, MemoryTransport(h.broker), signature_ok=lambda v: verify_signature(
            EventEnvelope.FromString(v), key.public_key()))
        bad = await verify_app(app, MemoryTransport(h.broker), signature_ok=lambda v: verify_signature(
            EventEnvelope.FromString(v), other.public_key()))
    assert good.ok, format_report(good)
    assert not bad.ok and bad.partitions[0].bad_signatures == 9


async def test_attest_is_stable_and_sees_one_changed_input(tmp_path: Path) -> None:
    app = build_app("verify-nav")
    async with TestHarness(app, partitions=2, data_dir=tmp_path, catalog=False) as h:
        await slice_of(h)
        t = MemoryTransport(h.broker)
        first = await attest(t, [FILLS], None, OffsetRange())
        again = await attest(t, [FILLS], None, OffsetRange())
        assert total_root(first) == total_root(again) and len(first) == 2
        one = await attest(t, [FILLS], 1, OffsetRange(1, 3))
        assert [r.count for r in one] == [2] and one[0].first == 1
        rec = h.broker.topics[FILLS][1][1]
        env = EventEnvelope.FromString(rec.value or b"")
        env.payload = TradeFillEvent(qty=99).SerializeToString()
        rec.value = env.SerializeToString()
        changed = await attest(t, [FILLS], None, OffsetRange())
    assert changed[1].root != first[1].root and changed[0].root == first[0].root
    assert total_root(changed) != total_root(first)


async def test_a_partition_and_an_offset_range_narrow_what_is_compared(tmp_path: Path) -> None:
    app = build_app("verify-nav")
    async with TestHarness(app, partitions=2, data_dir=tmp_path, catalog=False) as h:
        await slice_of(h)
        one = h.broker.topics[FILLS][1]
        report = await verify_app(app, MemoryTransport(h.broker), partition=1, offsets=OffsetRange(2, len(one) - 1))
        # A forged output caused by an input outside the range is not this range's business.
        first = next(r for r in h.broker.records(NAV) if EventEnvelope.FromString(r.value or b"").causation_id
                     == EventEnvelope.FromString(one[0].value or b"").event_id)
        forged = EventEnvelope.FromString(first.value or b"")
        forged.payload = NAVUpdateEvent(nav_usd_micros=1).SerializeToString()
        h.broker.append(NAV, forged.SerializeToString(), first.key, [])
        narrowed = await verify_app(app, MemoryTransport(h.broker), partition=1,
                                    offsets=OffsetRange(2, len(one) - 1))
        whole = await verify_app(app, MemoryTransport(h.broker), partition=1)
    assert list(report.partitions) == [1] and report.partitions[1].inputs == len(one) - 3
    assert report.ok and narrowed.ok, format_report(narrowed)
    assert not whole.ok and whole.mismatches[0].event_id == forged.event_id


async def test_verify_agrees_with_a_live_bad_header_name_dead_letter(tmp_path: Path) -> None:
    # The replay must refuse the record as the live worker did (its Record carries the mark through).
    import dataclasses
    import time

    from pit.events.v1.events_pb2 import TradeFillEvent

    from apps.nav import FILLS, build_app
    from pit_streams.testing import TestHarness
    from pit_streams.transport.memory import MemoryTransport
    from pit_streams.verify.command import format_report, verify_app

    app = build_app("verify-nav")
    async with TestHarness(app, partitions=1, data_dir=tmp_path, catalog=False) as h:
        await h.send(FILLS, TradeFillEvent(instrument="BTC", qty=1, price_micros=1), key="t/demo/s/alpha/c/0001",
                     run=False)
        log = h.broker.topics[FILLS][0]
        # As both real transports hand it out: a valid value, a header name that is not UTF-8.
        log.append(dataclasses.replace(log.pop(), timestamp_ms=int(time.time() * 1000),
                                       unreadable_headers="header name b'\\xff' is not UTF-8"))
        await h.run()
        assert dict(h.metrics.rejected) == {"bad_header_name": 1}
        report = await verify_app(app, MemoryTransport(h.broker))
    assert report.ok, format_report(report)
