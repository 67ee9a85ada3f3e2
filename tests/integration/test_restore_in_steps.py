"""On the real broker: a large changelog partition is restored a chunk per turn while the
consumer keeps polling; the partition is paused meanwhile and nothing polled for it is lost.
(That other partitions flow meanwhile is timing on a real broker: tests/unit/test_restore_steps.py
shows it turn by turn.)

The attack on the paused partition: records the client fetched (or handed out) for it during the
restore must be read again from the right offset once the store is ready — none skipped, none
processed against a half-restored store (the re-sent restored id below would then be answered).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Producer
from google.protobuf.timestamp_pb2 import Timestamp
from itapp import make_app
from pit.envelope.v1.envelope_pb2 import EventEnvelope
from support import Scenario, derived, fill, handled, new_worker, produce, read_all, run_until

from pit_streams.contract import Key, murmur2_partition, sha256_hex
from pit_streams.runtime.worker import WorkerSettings
from pit_streams.state.changelog import mark_records
from pit_streams.transport.base import Record, TopicPartition

pytestmark = pytest.mark.kafka

CHANGELOG_RECORDS = 1500
CHUNK = 20


def key_on(partition: int) -> Key:
    return next(k for i in range(100) if murmur2_partition(str(k := Key("demo", "alpha", f"{i:04d}")).encode(), 2)
                == partition)


async def test_a_large_restore_is_stepped_and_loses_nothing_held(transport: str, kafka_bootstrap: str,
                                                                  tmp_path: Path) -> None:
    sc = Scenario(kafka_bootstrap, partitions=2)
    sc.create()
    app = make_app(sc.name, sc.source, sc.output)
    k0, k1 = key_on(0), key_on(1)
    # Partition 0's changelog: the marks of 3 ids per record, written as the checkpoint writes them.
    ts = Timestamp()
    ts.GetCurrentTime()
    resent = fill(key=k0, partition=0)
    env = EventEnvelope.FromString(resent.value or b"")
    digest = (env.payload_sha256.lower() or sha256_hex(env.payload))[:32]  # the runtime's payload digest
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
    for i in range(CHANGELOG_RECORDS):
        marks = [("", resent.event_id, digest)] if i == 0 else [("", f"restored-{i}-{j}", "0" * 32) for j in range(3)]
        for record_key, value, _ in mark_records(k0, marks, producer=app.producer, ts=ts):
            producer.produce(sc.changelog, value, record_key.encode(), partition=0)
    assert producer.flush(30) == 0

    worker = new_worker(transport, kafka_bootstrap, app, tmp_path / "w",
                        settings=WorkerSettings(tmp_path / "w", restore_chunk_records=CHUNK))
    chunks: list[int] = []
    read = worker.transport.read_partition

    async def counting(tp: TopicPartition, start: int, max_records: int | None = None) -> list[Record]:
        got = await read(tp, start, max_records)
        if tp.partition == 0:
            chunks.append(len(got))
        return got

    worker.transport.read_partition = counting  # type: ignore[method-assign]
    held = [resent, fill(key=k0, partition=0), fill(key=k0, partition=0)]
    other = fill(key=k1, partition=1)
    produce(kafka_bootstrap, sc.source, [*held, other])
    await worker.start()
    try:
        await run_until([worker], lambda: handled(worker) >= 4, within_s=120, what="the held records after the restore")
    finally:
        await worker.stop()
    assert sum(chunks) == CHANGELOG_RECORDS and max(chunks) <= CHUNK and len(chunks) > CHANGELOG_RECORDS // CHUNK
    assert worker.metrics.restored_records == CHANGELOG_RECORDS and worker.metrics.deduped == 1
    outputs = sorted(o.envelope.causation_id for o in read_all(kafka_bootstrap, sc.output))
    assert outputs == sorted(r.event_id for r in (*held[1:], other))
    assert derived(app, resent.event_id) not in {o.envelope.event_id for o in read_all(kafka_bootstrap, sc.output)}
