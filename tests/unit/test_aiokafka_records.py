"""aiokafka's fetcher reading a batch with a header name that is not UTF-8 (Kafka allows any bytes).

aiokafka's own record parser raises UnicodeDecodeError inside ``getmany`` for such a name; through
``aiokafka_records`` the fetcher's own per-partition iterator hands out every record of the batch
once, in order, the bad name as ``NotUtf8``, and the transport marks that record for the dead-letter
topic. The broker test is tests/integration/test_header_names.py.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import aiokafka.consumer.fetcher as aiokafka_fetcher
import pytest
from aiokafka import TopicPartition as KafkaTopicPartition
from aiokafka.codec import gzip_encode
from aiokafka.consumer.fetcher import READ_COMMITTED, PartitionRecords
from aiokafka.record.default_records import DefaultRecordBase, DefaultRecordBatchBuilder
from aiokafka.record.util import calc_crc32c

from pit_streams.transport.aiokafka import AiokafkaTransport
from pit_streams.transport.aiokafka_records import NotUtf8, install_lenient_fetches, not_utf8

TOPIC = "pit.v1.exec.trade_fill"
TP = KafkaTopicPartition(TOPIC, 0)
BAD = b"\xff\xfe"
Spec = tuple[bytes, list[tuple[bytes, bytes]]]  # a record's value and its headers (raw names)


def batch(records: list[Spec], *, base_offset: int = 0, gzip: bool = False) -> bytes:
    """One v2 batch of ``records`` (key ``k``), header names written as given (placeholders patched)."""
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0, producer_id=-1,
                                        producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
    swaps = []
    for i, (value, headers) in enumerate(records):
        named = []
        for j, (name, hv) in enumerate(headers):
            try:
                named.append((name.decode(), hv))
            except UnicodeDecodeError:
                placeholder = f"~{i}{j}~".encode()[:len(name)].ljust(len(name), b"~")
                swaps.append((placeholder + bytes([len(hv) << 1]) + hv, name + bytes([len(hv) << 1]) + hv))
                named.append((placeholder.decode(), hv))
        builder.append(i, timestamp=1_700_000_000_000 + i, key=b"k", value=value, headers=named)
    buf = bytes(builder.build())
    for placeholder, name in swaps:
        assert buf.count(placeholder) == 1
        buf = buf.replace(placeholder, name)
    out = bytearray(buf)
    struct.pack_into(">q", out, 0, base_offset)
    if gzip:  # the records section compressed, the batch's length and attributes set to match
        size = DefaultRecordBase.HEADER_STRUCT.size
        out = out[:size] + bytearray(gzip_encode(bytes(out[size:])))
        struct.pack_into(">i", out, 8, len(out) - 12)
        struct.pack_into(">h", out, DefaultRecordBase.ATTRIBUTES_OFFSET, DefaultRecordBase.CODEC_GZIP)
    crc = calc_crc32c(bytes(out[DefaultRecordBase.ATTRIBUTES_OFFSET:]))
    struct.pack_into(">I", out, DefaultRecordBase.CRC_OFFSET, crc)
    return bytes(out)


def fetched(data: bytes, fetch_offset: int = 0) -> list[Any]:
    """What aiokafka's fetcher hands out of ``data``, through the records class it uses."""
    install_lenient_fetches()
    records = aiokafka_fetcher.MemoryRecords(data)
    return list(PartitionRecords(TP, records, [], fetch_offset, None, None, True, READ_COMMITTED))


def test_aiokafka_alone_cannot_read_the_batch() -> None:
    from aiokafka.record.memory_records import MemoryRecords

    records = MemoryRecords(batch([(b"v", [(BAD, b"x")])]))
    with pytest.raises(UnicodeDecodeError):
        list(PartitionRecords(TP, records, [], 0, None, None, True, READ_COMMITTED))


@pytest.mark.parametrize("gzip", [False, True])
def test_every_record_is_handed_out_once_in_order(gzip: bool) -> None:
    data = batch([(b"a", [(b"trace", b"t-0")]), (b"b", [(b"trace", b"t-1"), (BAD, b"x")]), (b"c", [])],
                 base_offset=10, gzip=gzip)
    data += batch([(b"d", [(b"trace", b"t-3")])], base_offset=13)  # the batch after it: aiokafka's parser
    got = fetched(data, fetch_offset=10)
    assert [(m.offset, m.value) for m in got] == [(10, b"a"), (11, b"b"), (12, b"c"), (13, b"d")]
    assert [m.timestamp for m in got] == [1_700_000_000_000, 1_700_000_000_001, 1_700_000_000_002, 1_700_000_000_000]
    assert got[1].key == b"k"
    assert got[1].headers == (("trace", b"t-1"), ("\\xff\\xfe", b"x"))
    assert type(got[1].headers[1][0]) is NotUtf8 and got[1].headers[1][0].raw == BAD
    assert [not_utf8(m.headers) for m in (got[0], got[2], got[3])] == ["", "", ""]
    assert not_utf8(got[1].headers).startswith("header name b'\\xff\\xfe' is not UTF-8")


def test_records_before_the_fetch_offset_are_skipped_as_before() -> None:
    data = batch([(b"a", []), (b"b", [(BAD, b"x")]), (b"c", [])])
    assert [m.offset for m in fetched(data, fetch_offset=2)] == [2]


class _Consumer:
    """getmany as aiokafka's fetcher does it: a fetched batch's records through PartitionRecords."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def assignment(self) -> set[KafkaTopicPartition]:
        return {TP}

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[KafkaTopicPartition, list[Any]]:
        return {TP: fetched(self.data)}


def test_the_transport_marks_the_record_for_the_dead_letter_topic() -> None:
    async def poll() -> Any:
        t = AiokafkaTransport("127.0.0.1:9")
        t._consumer = _Consumer(batch([(b"a", []), (b"b", [(BAD, b"x")])]))
        t._assigned.set()
        return await t.poll(10, 0.01)

    good, bad = asyncio.run(poll()).records
    assert good.unreadable_headers == ""
    assert "not UTF-8" in bad.unreadable_headers
    assert bad.headers == [("\\xff\\xfe", b"x")]


class _Reader:
    """A groupless reader whose one fetch is ``data`` (the changelog reader's and verify's path)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def assign(self, tps: Any) -> None: ...

    async def beginning_offsets(self, tps: Any) -> Any:
        return {TP: 0}

    async def end_offsets(self, tps: Any) -> Any:
        return {TP: 2}

    def seek(self, tp: Any, offset: int) -> None: ...

    async def position(self, tp: Any) -> int:
        return self.pos

    async def getmany(self, tp: Any, timeout_ms: int, max_records: int) -> Any:
        self.pos = 2
        return {TP: fetched(self.data)}


def test_read_partition_marks_the_record_as_poll_does() -> None:
    # verify reads input topics through read_partition: an unmarked record would be handled there.
    from pit_streams.transport.aiokafka_changelog import read_to_end
    from pit_streams.transport.base import TopicPartition

    install_lenient_fetches()
    reader = _Reader(batch([(b"a", []), (b"b", [(BAD, b"x")])]))
    good, bad = asyncio.run(read_to_end(reader, TopicPartition(TOPIC, 0), 0, None))
    assert good.unreadable_headers == "" and bad.unreadable_headers != ""
