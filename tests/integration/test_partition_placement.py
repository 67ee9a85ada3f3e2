"""Partition placement on a real broker (issue 10, item 11): librdkafka's murmur2_random agrees with
``murmur2_partition``, and a record off its key's partition is dead-lettered as ``wrong_partition``."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Producer
from itapp import make_app
from pit.events.v1.events_pb2 import NAVUpdateEvent
from support import KEY, Scenario, dead_letters, fill, handled, new_worker, produce, read_all, run_until, uid

from pit_streams.contract import murmur2_partition

pytestmark = pytest.mark.kafka

PARTITIONS = 6


def test_librdkafka_murmur2_random_places_keys_where_murmur2_partition_says(kafka_bootstrap: str) -> None:
    sc = Scenario(kafka_bootstrap, partitions=PARTITIONS)
    sc.create(output=False)
    # Kafka's own UtilsTest vectors plus canonical keys of several shapes and lengths (0..3 mod 4).
    keys = [b"21", b"foobar", b"abc", b"a-little-bit-long-string", b"a-little-bit-longer-string",
            *(f"t/tenant-{i}/s/series-{i % 7}/c/{i:0{1 + i % 5}d}".encode() for i in range(200)),
            f"t/{uid()}/s/x".encode()]
    placed: dict[bytes, int] = {}
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "partitioner": "murmur2_random"})

    def on_delivery(err: object, msg: object) -> None:
        assert err is None, err
        placed[msg.key()] = msg.partition()  # type: ignore[attr-defined]

    for key in keys:
        producer.produce(sc.source, b"v", key, on_delivery=on_delivery)
    assert producer.flush(30) == 0
    assert placed == {key: murmur2_partition(key, PARTITIONS) for key in keys}
    assert len(set(placed.values())) == PARTITIONS


async def test_records_on_the_wrong_partition_are_dead_lettered_and_the_keys_state_is_right(
    transport: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    sc = Scenario(kafka_bootstrap, partitions=PARTITIONS)
    sc.create()
    right = murmur2_partition(str(KEY).encode(), PARTITIONS)
    wrong = [(right + d) % PARTITIONS for d in (1, 2)]
    good = [fill(partition=right) for _ in range(3)]
    misplaced = [fill(qty=100, partition=p) for p in wrong]
    produce(kafka_bootstrap, sc.source, [good[0], misplaced[0], good[1], misplaced[1], good[2]])

    worker = new_worker(transport, kafka_bootstrap, make_app(sc.name, sc.source, sc.output), tmp_path)
    await worker.start()
    try:
        await run_until([worker], lambda: handled(worker) == 5, what="every record handled")
    finally:
        await worker.stop()

    assert worker.metrics.rejected == {"wrong_partition": 2}
    dead = dead_letters(kafka_bootstrap, sc.name)
    assert sorted(int(d.headers["pit.source.partition"]) for d in dead) == sorted(wrong)
    for d in dead:
        assert d.headers["pit.reason"] == b"wrong_partition"
        assert f"belongs on partition {right} of {PARTITIONS}".encode() in d.headers["pit.detail"]
        assert d.value in {m.value for m in misplaced}
    cash = [NAVUpdateEvent.FromString(o.envelope.payload).cash_liquid_usd_micros
            for o in read_all(kafka_bootstrap, sc.output)]
    assert cash == [-1_000_000, -2_000_000, -3_000_000]  # the misplaced qty=100 fills counted nowhere
