"""A header name that is not UTF-8, on the real broker.

Kafka's wire format carries header names as raw bytes, and Sarama, franz-go or librdkafka's C API
write any; both Python clients read names as text. The record is dead-lettered (``bad_header_name``,
its key and value kept), the good records around it in the same batch go through, and the worker
neither crashes nor stalls. The Python clients only take str names, so the batch is written raw.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from aiokafka import TopicPartition as KafkaTopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.util import calc_crc32c
from itapp import make_app
from support import KEY, Raw, Scenario, dead_letters, fill, new_worker, read_all

from pit_streams.runtime import deadletter

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

BAD_NAME = b"\xff\xfe"
BAD_VALUE = b"hostile-01"  # 10 bytes: its length is one varint byte, 0x14


def _raw_batch(records: list[tuple[Raw, list[tuple[bytes, bytes]]]]) -> bytes:
    """One record batch (v2, uncompressed) holding ``records`` with their header names as given.

    Built with placeholder names of the same length, which are then replaced byte for byte; the
    CRC (over everything after it) is computed again, so the broker takes the batch as valid.
    """
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0, producer_id=-1,
                                        producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
    swaps: list[tuple[bytes, bytes]] = []
    for offset, (raw, headers) in enumerate(records):
        named: list[tuple[str, bytes]] = []
        for name, value in headers:
            try:
                named.append((name.decode(), value))
            except UnicodeDecodeError:
                placeholder = ("Q" * len(name)).encode()
                named.append((placeholder.decode(), value))
                swaps.append((placeholder + bytes([len(value) << 1]) + value, name + bytes([len(value) << 1]) + value))
        builder.append(offset, timestamp=None, key=raw.key, value=raw.value, headers=named)
    buf = bytes(builder.build())
    for placeholder, name in swaps:
        assert buf.count(placeholder) == 1
        buf = buf.replace(placeholder, name)
    patched = bytearray(buf)
    struct.pack_into(">I", patched, 17, calc_crc32c(bytes(patched[21:])))
    return bytes(patched)


async def _produce_raw(bootstrap: str, topic: str, batch: bytes) -> None:
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        metadata = await client.fetch_all_metadata()
        leader = metadata.leader_for_partition(KafkaTopicPartition(topic, 0))
        request = ProduceRequest(transactional_id=None, required_acks=-1, timeout=30_000,
                                 topics=[(topic, [(0, batch)])])
        response = await client.send(leader, request)
        [(_, [(partition, error_code, *_)])] = response.topics
        assert (partition, error_code) == (0, 0), response
    finally:
        await client.close()


async def test_a_header_name_that_is_not_utf8_is_dead_lettered_and_the_rest_goes_through(
    transport: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    sc = Scenario(kafka_bootstrap)
    sc.create()
    before, hostile, after = fill(), fill(), fill()
    # A good record first in the same batch: the client must not hand it out twice or lose it.
    await _produce_raw(kafka_bootstrap, sc.source, _raw_batch([
        (before, [(b"trace", b"t-0")]),
        (hostile, [(b"trace", b"t-1"), (BAD_NAME, BAD_VALUE)]),
        (after, []),
    ]))
    worker = new_worker(transport, kafka_bootstrap, make_app(sc.name, sc.source, sc.output), tmp_path / "d")
    await worker.start()
    try:
        # On a worker that cannot read the record, run_once raises (the process would exit, restart
        # at the same offset and crash again) or never gets past it.
        for _ in range(600):
            if worker.metrics.committed_offsets.get(f"{sc.source}[0]") == 3:
                break
            await worker.run_once()
        else:
            raise AssertionError("the worker did not get past the record")
    finally:
        await worker.stop()
    assert worker.metrics.processed == 2
    assert dict(worker.metrics.rejected) == {"bad_header_name": 1}
    outputs = read_all(kafka_bootstrap, sc.output)
    assert sorted(o.envelope.causation_id for o in outputs) == sorted([before.event_id, after.event_id])

    [dead] = dead_letters(kafka_bootstrap, sc.name)
    assert dead.headers[deadletter.REASON] == b"bad_header_name"
    assert dead.headers[deadletter.SOURCE_OFFSET] == b"1"
    assert (dead.key, dead.value) == (str(KEY).encode(), hostile.value)
    detail = dead.headers[deadletter.DETAIL].decode()
    assert "not UTF-8" in detail, detail
    if transport == "aiokafka":
        # aiokafka's records are parsed again leniently: every header is kept, the bad name with
        # \x escapes (text cannot carry its bytes), which the detail says.
        assert r"b'\xff\xfe'" in detail and r"\x escapes" in detail, detail
        assert dead.source_headers == {"trace": b"t-1", r"\xff\xfe": BAD_VALUE}
    else:
        # confluent-kafka cannot give any of the record's headers: the detail says none are carried.
        assert "none of its headers" in detail, detail
        assert dead.source_headers == {}
