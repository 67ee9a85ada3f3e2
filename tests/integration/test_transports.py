"""The two transports agree where the runtime relies on them being interchangeable."""

from __future__ import annotations

import asyncio
import time

import pytest
from kafka_support import create_topic
from support import uid

from pit_streams.transport.base import Record, TopicPartition, TransportError
from pit_streams.transport.factory import TRANSPORTS, make_transport

pytestmark = pytest.mark.kafka


async def test_a_key_lands_on_the_same_partition_whichever_transport_sends_it(kafka_bootstrap: str) -> None:
    """Per-key state lives in one partition store only if every producer partitions keys alike."""
    topic = f"pit.v1.exec.keys_{uid()}"
    create_topic(kafka_bootstrap, topic, 6)
    keys = [f"t/demo/s/alpha/c/{i:04d}".encode() for i in range(24)]
    placed: dict[str, list[int]] = {}
    for kind in TRANSPORTS:
        transport = make_transport(kind, kafka_bootstrap)
        await transport.start(None)
        try:
            partitions = []
            for key in keys:
                transport.send(topic, b"v", key, [])
                [tp] = await transport.flush()
                partitions.append(tp.partition)
            placed[kind] = partitions
        finally:
            await transport.stop()
    assert placed["confluent"] == placed["aiokafka"]
    assert len(set(placed["confluent"])) > 1


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_read_partition_returns_the_tail_with_tombstones_and_headers(kind: str, kafka_bootstrap: str) -> None:
    topic = f"pit.v1.runtime.restore_{uid()}_changelog"
    create_topic(kafka_bootstrap, topic, 2, {"cleanup.policy": "compact"})
    transport = make_transport(kind, kafka_bootstrap)
    await transport.start(None)
    try:
        for i in range(5):
            transport.send(topic, None if i == 3 else f"v{i}".encode(), f"k{i}".encode(), [("h", f"{i}".encode())], 1)
        assert await transport.flush() == {TopicPartition(topic, 1): 4}
        tail = await transport.read_partition(TopicPartition(topic, 1), 2)
        assert [(r.offset, r.key, r.value, r.headers) for r in tail] == [
            (2, b"k2", b"v2", [("h", b"2")]),
            (3, b"k3", None, [("h", b"3")]),
            (4, b"k4", b"v4", [("h", b"4")]),
        ]
        assert await transport.read_partition(TopicPartition(topic, 1), 5) == []
        # A chunk at a time, as a restore reads: at most max_records, fewer only at the end.
        chunks = [await transport.read_partition(TopicPartition(topic, 1), start, 2) for start in (0, 2, 4)]
        assert [[r.offset for r in c] for c in chunks] == [[0, 1], [2, 3], [4]]
        assert await transport.read_partition(TopicPartition(topic, 0), 0) == []
        assert await transport.partitions_for(topic) == 2
        with pytest.raises(TransportError, match="does not exist"):
            await transport.partitions_for(f"pit.v1.exec.missing_{uid()}")
    finally:
        await transport.stop()


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_read_that_goes_on_reads_to_the_end_as_it_is_then(kind: str, kafka_bootstrap: str) -> None:
    """A restore cut short (its partition revoked) and begun again later goes on where the reader
    stopped: records the partition's interim owner wrote meanwhile must be read too, not cut off
    at the end the first read saw (that lost their state and dedupe marks)."""
    topic = f"pit.v1.runtime.restore_{uid()}_changelog"
    create_topic(kafka_bootstrap, topic, 1, {"cleanup.policy": "compact"})
    tp = TopicPartition(topic, 0)
    transport = make_transport(kind, kafka_bootstrap)
    await transport.start(None)
    try:
        for i in range(4):
            transport.send(topic, b"before", f"k{i}".encode(), [], 0)
        await transport.flush()
        assert [r.offset for r in await transport.read_partition(tp, 0, 2)] == [0, 1]  # cut short here
        for i in range(3):
            transport.send(topic, b"meanwhile", f"m{i}".encode(), [], 0)
        await transport.flush()
        rest = await transport.read_partition(tp, 2, 100)
        assert [(r.offset, r.value) for r in rest] == [(2, b"before"), (3, b"before"), (4, b"meanwhile"),
                                                       (5, b"meanwhile"), (6, b"meanwhile")]
    finally:
        await transport.stop()


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_send_to_a_missing_topic_fails_at_flush(kind: str, kafka_bootstrap: str) -> None:
    from pit_streams.transport.aiokafka import AiokafkaTransport
    from pit_streams.transport.base import DeliveryError
    from pit_streams.transport.confluent import ConfluentTransport

    cls = ConfluentTransport if kind == "confluent" else AiokafkaTransport
    transport = cls(kafka_bootstrap, delivery_timeout_ms=2000)
    ok = f"pit.v1.exec.ok_{uid()}"
    create_topic(kafka_bootstrap, ok)
    await transport.start(None)
    try:
        transport.send(f"pit.v1.exec.missing_{uid()}", b"v", b"k", [])
        transport.send(ok, b"v", b"k", [])
        with pytest.raises(DeliveryError, match="missing"):
            await transport.flush()
        transport.send(ok, b"v2", b"k", [])  # the transport stays usable
        assert await transport.flush() == {TopicPartition(ok, 0): 1}
    finally:
        await transport.stop()


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_poll_returns_the_assignment_before_any_record_of_it(kind: str, kafka_bootstrap: str) -> None:
    """No callback into the runtime: the partitions gained come back from poll, never after a
    record of theirs, so the runtime can restore a store before it processes the partition."""
    from pit_streams.transport.base import Subscription

    topic, group = f"pit.v1.exec.assign_{uid()}", f"it-{uid()}"
    create_topic(kafka_bootstrap, topic, 2)
    transport = make_transport(kind, kafka_bootstrap)
    await transport.start(None)
    for p in (0, 1):
        transport.send(topic, b"v", b"k", [], p)
    await transport.flush()
    await transport.stop()

    consumer = make_transport(kind, kafka_bootstrap)
    await consumer.start(Subscription([topic], group, transactional_id=f"{group}-0"))
    try:
        owned: set[TopicPartition] = set()
        records: list[Record] = []
        deadline = time.monotonic() + 30
        while len(records) < 2:
            assert time.monotonic() < deadline, f"no records after the assignment {sorted(owned)}"
            polled = await consumer.poll(100, 0.2)
            assert not polled.revoked
            owned.update(polled.assigned)
            for rec in polled.records:
                assert TopicPartition(rec.topic, rec.partition) in owned, "a record came before its assignment"
            records += polled.records
        assert owned == {TopicPartition(topic, 0), TopicPartition(topic, 1)}
    finally:
        await consumer.stop()


async def test_aiokafka_revocation_waits_for_the_batch_in_flight(kafka_bootstrap: str) -> None:
    """aiokafka rebalances in the background; the transport holds a revocation back until the
    runtime polls again, i.e. until the batch it handed out is committed."""
    from pit_streams.transport.aiokafka import AiokafkaTransport
    from pit_streams.transport.base import Polled, Subscription

    topic, group = f"pit.v1.exec.revoke_{uid()}", f"it-{uid()}"
    create_topic(kafka_bootstrap, topic, 2)
    first = make_transport("confluent", kafka_bootstrap)
    await first.start(None)
    for p in (0, 1):
        first.send(topic, b"v", b"k", [], p)
    await first.flush()
    await first.stop()

    events: list[tuple[str, list[TopicPartition]]] = []

    def record(member: int, polled: Polled) -> list[Record]:
        # The order the runtime applies a poll's changes in: lost, then gained, then records.
        if polled.revoked:
            events.append((f"revoked-{member}", list(polled.revoked)))
        if polled.assigned:
            events.append((f"assigned-{member}", list(polled.assigned)))
        return polled.records

    t1, t2 = AiokafkaTransport(kafka_bootstrap), AiokafkaTransport(kafka_bootstrap)
    await t1.start(Subscription([topic], group))
    try:
        deadline = time.monotonic() + 30
        batch: list[Record] = []
        while len(batch) < 2:  # both partitions' records: a batch is now in flight
            assert time.monotonic() < deadline, "t1 got no records"
            batch += record(1, await t1.poll(100, 0.2))
        await t2.start(Subscription([topic], group))
        try:
            while t1._assigned.is_set():  # t2's join started t1's rebalance; its revocation now waits
                assert time.monotonic() < deadline, "no rebalance started"
                await asyncio.sleep(0.05)
            # Held back: not recorded for the runtime, and t1 still fences both partitions' writers.
            assert not t1._rebalances.pending()
            assert t1._state is not None and t1._state.partitions() == {0, 1}
            assert [name for name, _ in events] == ["assigned-1"]
            await t1.commit("", {}, {TopicPartition(r.topic, r.partition): r.offset + 1 for r in batch})
            # The next poll lets the rebalance go on: any record it hands out comes after the
            # revocation it reports. (A partition assigned back may be read again from before
            # the commit: the coordinator serves a transactional offset commit to the next
            # offset fetch only once the commit marker is written, and aiokafka does not ask for
            # stable offsets (KIP-447). At-least-once; the dedupe marks drop the repeat.)
            after_commit = await t1.poll(100, 0.2)
            assert not record(1, after_commit) or after_commit.revoked
            while not ({"assigned-2", "reassigned-1"} <= _names(events) and t1._assigned.is_set()):
                assert time.monotonic() < deadline, f"rebalance did not complete: {events}"
                record(1, await t1.poll(100, 0.05))
                record(2, await t2.poll(100, 0.05))
        finally:
            await t2.stop()
    finally:
        await t1.stop()
    both = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
    assert events[:2] == [("assigned-1", both), ("revoked-1", both)]
    after = dict(events[2:])  # each member got one partition of the two
    assert sorted(after["assigned-1"] + after["assigned-2"]) == both


def _names(events: list[tuple[str, list[TopicPartition]]]) -> set[str]:
    """Event names; an ``assigned-1`` after ``revoked-1`` counts as ``reassigned-1``."""
    names = {name for name, _ in events}
    if [name for name, _ in events].count("assigned-1") > 1:
        names.add("reassigned-1")
    return names


def _stable_end(bootstrap: str, tp: TopicPartition) -> tuple[int, int]:
    """(the last stable offset of ``tp``, where a read_committed reader stops; its high watermark)."""
    import confluent_kafka as ck

    ends = []
    for isolation in ("read_committed", "read_uncommitted"):  # ListOffsets answers the LSO to the first
        reader = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": f"it-{uid()}", "isolation.level": isolation})
        try:
            ends.append(reader.get_watermark_offsets(ck.TopicPartition(tp.topic, tp.partition), 10.0)[1])
        finally:
            reader.close()
    return ends[0], ends[1]


async def test_a_restarted_worker_aborts_the_transaction_it_was_killed_in(kafka_bootstrap: str) -> None:
    """A worker killed inside a checkpoint leaves its transaction open, holding back every
    read_committed reader of the changelog (the partition's next owner restoring among them).
    Its restart with the same data directory — the same transactional id (ADR 0003) — aborts it
    at once rather than leaving it to the broker's transaction timeout. Killed in its first
    checkpoint and in a later one, after one committed."""
    from pit_streams.transport.base import Subscription
    from pit_streams.transport.confluent import ConfluentTransport

    source, changelog, group = f"pit.v1.exec.txn_{uid()}", f"pit.v1.exec.txn_{uid()}_changelog", f"it-{uid()}"
    create_topic(kafka_bootstrap, source, 1)
    create_topic(kafka_bootstrap, changelog, 1, {"cleanup.policy": "compact"})
    tp = TopicPartition(changelog, 0)
    subscription = Subscription([source], group, transactional_id=f"{group}-{uid()}")
    committed: list[bytes] = []
    for crash_in in (0, 1):  # checkpoints committed before the one the worker dies in
        dying = ConfluentTransport(kafka_bootstrap)
        await dying.start(subscription)
        for n in range(crash_in):
            await dying.commit(changelog, {0: [(f"k{n}".encode(), b"done")]}, {})
            committed.append(b"done")
        # Killed inside the next checkpoint: its changelog record is written, the commit never comes.
        dying._txn.begin_transaction()
        dying._txn.produce(changelog, b"left open", b"k", 0)
        assert dying._txn.flush(10) == 0
        stops_at, high = _stable_end(kafka_bootstrap, tp)
        assert stops_at < high, "the unfinished transaction should hold read_committed readers back"

        restarted = ConfluentTransport(kafka_bootstrap)
        await restarted.start(subscription)
        try:
            stops_at, high = _stable_end(kafka_bootstrap, tp)
            assert stops_at == high, "the restart left its predecessor's transaction open"
            assert [r.value for r in await restarted.read_partition(tp, 0)] == committed
        finally:
            await restarted.stop()
        dying._thread.shutdown(wait=False)
        dying._commit_thread.shutdown(wait=False)
