"""aiokafka's fetched records, readable when a header name is not UTF-8.

Kafka's wire format carries header names as raw bytes (Sarama, franz-go, librdkafka's C API write
any), and aiokafka decodes them strictly while its fetcher iterates a fetched batch inside
``getmany``. The ``UnicodeDecodeError`` does not just leave ``getmany``: the fetcher has already
moved on the positions of partitions drained earlier in that call, whose records are lost with the
exception, and the bad partition is fetched again from the same offset and fails again. So the
error is kept from happening: ``install_lenient_fetches`` makes the fetcher read fetched data
through ``_Records``, whose v2 batches are aiokafka's own (its C parser, unchanged) until one raises
on a header name; that batch is then parsed again here, from its first record, with such a name as
``NotUtf8``: text carrying its bytes with \\x escapes. aiokafka's per-partition iterator skips the
records of the batch it has handed out already (their offsets are below its next fetch offset), so
no record is lost or handed out twice. The transport refuses a record with such a name (``not_utf8``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import aiokafka.consumer.fetcher as aiokafka_fetcher
from aiokafka.codec import gzip_decode, lz4_decode, snappy_decode, zstd_decode
from aiokafka.errors import CorruptRecordException
from aiokafka.record.default_records import DefaultRecordBase
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import decode_varint

from pit_streams.transport.base import Record, record_headers

_LOG_OVERHEAD = 12  # a batch's base offset (int64) and length (int32), ahead of the length's bytes
_MAGIC_AT = 16
_HEADER = DefaultRecordBase.HEADER_STRUCT
_CODECS: dict[int, Callable[[bytes], bytes]] = {
    DefaultRecordBase.CODEC_GZIP: gzip_decode, DefaultRecordBase.CODEC_SNAPPY: snappy_decode,
    DefaultRecordBase.CODEC_LZ4: lz4_decode, DefaultRecordBase.CODEC_ZSTD: zstd_decode,
}


class NotUtf8(str):
    """A header name that is not UTF-8, as text: its bytes with \\x escapes; ``raw``: the bytes."""

    raw: bytes

    def __new__(cls, raw: bytes) -> NotUtf8:
        name = super().__new__(cls, raw.decode("utf-8", "backslashreplace"))
        name.raw = raw
        return name


def not_utf8(headers: Sequence[tuple[str, Any]]) -> str:
    """Why a record with these headers cannot be handled (a name that is not UTF-8), or ""."""
    bad = [name for name, _ in headers if type(name) is NotUtf8]
    if not bad:
        return ""
    names = ", ".join(repr(name.raw) for name in bad)
    return (f"header name {names} is not UTF-8 (Kafka allows any bytes; header names are read as text):"
            " carried here with \\x escapes, its other headers, key and value as they are")


def as_record(m: Any) -> Record:
    """An aiokafka ``ConsumerRecord`` as the runtime types it, a header name that is not UTF-8 noted
    (``Record.unreadable_headers``). Every record the aiokafka transport reads is built here."""
    return Record(m.topic, m.partition, m.offset, m.key, m.value, record_headers(m.headers), m.timestamp,
                  not_utf8(m.headers) if m.headers else "")


def install_lenient_fetches() -> None:
    """Make aiokafka's fetcher read fetched data through ``_Records`` (every consumer of the process)."""
    aiokafka_fetcher.MemoryRecords = _Records


class _Records:
    """aiokafka's ``MemoryRecords`` (one partition's fetched batches), each v2 batch with its bytes."""

    def __init__(self, bytes_data: bytes) -> None:
        self._records = MemoryRecords(bytes_data)
        self._data = bytes_data
        self._pos = 0

    def size_in_bytes(self) -> int:
        return int(self._records.size_in_bytes())

    def has_next(self) -> bool:
        return bool(self._records.has_next())

    def next_batch(self) -> Any:
        batch = self._records.next_batch()  # aiokafka's checks (a truncated batch, ...) as they are
        if batch is None:
            return None
        start = self._pos
        self._pos = start + _LOG_OVERHEAD + struct.unpack_from(">i", self._data, start + 8)[0]
        if self._data[start + _MAGIC_AT] < 2:
            return batch  # message sets v0 and v1 carry no headers
        return _Batch(batch, self._data, start, self._pos)


class _Batch:
    """A v2 batch as aiokafka's fetcher reads it (attributes, ``validate_crc``, iteration)."""

    __slots__ = ("_batch", "_data", "_end", "_start")

    def __init__(self, batch: Any, data: bytes, start: int, end: int) -> None:
        self._batch = batch
        self._data = data
        self._start = start
        self._end = end

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)

    def __iter__(self) -> Iterator[Any]:
        return self._records()

    def __next__(self) -> Any:  # the fetcher takes a control batch's marker record with next()
        return next(self._batch)

    def _records(self) -> Iterator[Any]:
        try:
            yield from self._batch
        except UnicodeDecodeError:
            yield from _lenient(self._data[self._start:self._end])


class _Record(NamedTuple):
    """What aiokafka's fetcher reads of a record."""

    offset: int
    timestamp: int
    timestamp_type: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    checksum: None = None


def _lenient(batch: bytes) -> Iterator[_Record]:
    """The records of one v2 batch (its CRC already checked), as aiokafka parses them but for the
    header names: one that is not UTF-8 is a ``NotUtf8``."""
    fields = _HEADER.unpack_from(batch)
    base_offset, attributes, first_ts, max_ts, count = fields[0], fields[5], fields[7], fields[8], fields[12]
    data = batch[_HEADER.size:]
    if codec := attributes & DefaultRecordBase.CODEC_MASK:
        data = _CODECS[codec](data)
    buf = bytearray(data)
    log_append_time = bool(attributes & DefaultRecordBase.TIMESTAMP_TYPE_MASK)
    pos = 0
    for _ in range(count):
        length, pos = decode_varint(buf, pos)
        end = pos + length
        _, pos = decode_varint(buf, pos)  # the record's attributes: unused
        ts_delta, pos = decode_varint(buf, pos)
        offset_delta, pos = decode_varint(buf, pos)
        key, pos = _nullable(buf, pos)
        value, pos = _nullable(buf, pos)
        header_count, pos = decode_varint(buf, pos)
        if header_count < 0:
            raise CorruptRecordException(f"Found invalid number of record headers {header_count}")
        headers: list[tuple[str, bytes | None]] = []
        for _ in range(header_count):
            size, pos = decode_varint(buf, pos)
            if size < 0:
                raise CorruptRecordException(f"Invalid negative header key size {size}")
            raw = bytes(buf[pos:pos + size])
            header_value, pos = _nullable(buf, pos + size)
            try:
                headers.append((raw.decode("utf-8"), header_value))
            except UnicodeDecodeError:
                headers.append((NotUtf8(raw), header_value))
        if size_left := end - pos:
            raise CorruptRecordException(f"Invalid record size: {size_left} bytes of a record left unread")
        timestamp = max_ts if log_append_time else first_ts + ts_delta
        yield _Record(base_offset + offset_delta, timestamp, int(log_append_time), key, value, headers)


def _nullable(buf: bytearray, pos: int) -> tuple[bytes | None, int]:
    size, pos = decode_varint(buf, pos)
    if size < 0:
        return None, pos
    return bytes(buf[pos:pos + size]), pos + size
