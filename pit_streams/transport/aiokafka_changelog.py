"""The aiokafka transport's changelog side: the per-partition transactional producers that
write state and offsets (and fence a partition's previous owner), the restore reader, and the
follower of the partitions a worker keeps standby stores of.

aiokafka's transactional offset commit carries no group generation (no KIP-447), so fencing is
by transactional id instead, as Kafka Streams did before it: one id per partition number of the
group, taken over (and its older holder fenced) by whichever member owns that partition now.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from aiokafka import TopicPartition as KafkaTopicPartition
from aiokafka.errors import KafkaError, ProducerFenced

from pit_streams.transport.aiokafka_records import as_record
from pit_streams.transport.base import (
    ChangelogWrite,
    Fenced,
    Followed,
    Record,
    TopicPartition,
    TransportError,
)
from pit_streams.transport.follow import FollowPlaces

_TRANSACTION_TIMEOUT_MS = 10_000
# A transaction begun right after the one before gets CONCURRENT_TRANSACTIONS until the broker has
# written the previous markers; aiokafka then waits retry_backoff_ms (100 ms by default) per try.
_TRANSACTION_RETRY_BACKOFF_MS = 20
_RESTORE_STALL_S = 60.0  # no record for this long while restoring: give up loudly instead of hanging

Client = Callable[[Any], Awaitable[None]]


class StateProducers:
    """The transactional producers of the partition numbers this member owns."""

    def __init__(self, group: str, make: Callable[..., Any], start: Client, close: Client) -> None:
        self._group = group
        self._make = make  # a new producer, given extra keyword settings
        self._start = start
        self._close = close
        self._producers: dict[int, Any] = {}

    def partitions(self) -> set[int]:
        return set(self._producers)

    async def fence(self, partitions: Iterable[int]) -> None:
        """Take over the transactional id of each partition: its previous holder is fenced and
        what it left open is aborted, so nothing it still sends can become visible."""
        for partition in sorted(set(partitions)):
            if partition not in self._producers:
                producer = self._make(transactional_id=f"{self._group}-state-{partition}",
                                      transaction_timeout_ms=_TRANSACTION_TIMEOUT_MS,
                                      retry_backoff_ms=_TRANSACTION_RETRY_BACKOFF_MS)
                await self._start(producer)
                self._producers[partition] = producer

    async def drop(self, partitions: Iterable[int]) -> None:
        for partition in set(partitions):
            producer = self._producers.pop(partition, None)
            if producer is not None:
                await self._close(producer)

    async def commit(
        self, partition: int, changelog_topic: str, records: Sequence[ChangelogWrite],
        offsets: Mapping[TopicPartition, int],
    ) -> int:
        """One transaction of ``partition``'s changelog records and offsets; its last changelog offset."""
        producer = self._producers.get(partition)
        if producer is None:  # made on assignment only: making one now could fence the real owner
            raise Fenced(f"partition {partition} has no state producer: it is not (or no longer) ours")
        last = -1
        try:
            async with producer.transaction():
                acks = [await producer.send(changelog_topic, value, key=key, partition=partition)
                        for key, value in records]
                for meta in await asyncio.gather(*acks):
                    last = max(last, meta.offset)
                if offsets:
                    await producer.send_offsets_to_transaction(
                        {KafkaTopicPartition(tp.topic, tp.partition): o for tp, o in offsets.items()}, self._group,
                    )
        except ProducerFenced as exc:
            await self.drop({partition})
            raise Fenced(f"partition {partition}: another member took over its state producer") from exc
        except Exception as exc:  # the transaction context aborted it; the producer stays usable
            raise TransportError(f"transaction of partition {partition} aborted: {describe(exc)}") from exc
        return last


class ReadCursor:
    """Where the last chunked read of a restore stopped, so the next one reads on without
    assigning and seeking again (and keeps what the client already fetched)."""

    def __init__(self) -> None:
        self.at: tuple[TopicPartition, int] | None = None
        self.high = 0


async def read_to_end(reader: Any, tp: TopicPartition, start_offset: int, max_records: int | None = None,
                      cursor: ReadCursor | None = None) -> list[Record]:
    """The records of ``tp`` from ``start_offset`` to its current end, at most ``max_records``
    (fewer only at the end), through the groupless ``reader`` (read_committed)."""
    limit = max_records if max_records is not None else 2**62
    cursor = cursor or ReadCursor()
    ktp = KafkaTopicPartition(tp.topic, tp.partition)
    try:
        if cursor.at != (tp, start_offset):
            cursor.at = None
            reader.assign([ktp])
            low = (await reader.beginning_offsets([ktp]))[ktp]
            cursor.high = (await reader.end_offsets([ktp]))[ktp]
            start = max(start_offset, low)
            if start >= cursor.high:
                return []
            reader.seek(ktp, start)
        high = cursor.high
        out: list[Record] = []
        loop = asyncio.get_running_loop()
        stalled_at = loop.time() + _RESTORE_STALL_S
        # Compaction leaves gaps, so the position (not the last offset seen) says when we are done.
        # The end is taken again when reached: a read that goes on may continue one begun long ago
        # (a restore cut short by a revocation), and the interim owner wrote on meanwhile.
        while len(out) < limit and ((position := await reader.position(ktp)) < high or (
                high := await _end_moved(reader, ktp, high, cursor))):
            batch = (await reader.getmany(ktp, timeout_ms=1000, max_records=min(10_000, limit - len(out)))).get(ktp, ())
            if batch:
                # With broker time: verify replays dead letters (ts = the source's) by it.
                out.extend(as_record(m) for m in batch)
                stalled_at = loop.time() + _RESTORE_STALL_S
            elif loop.time() > stalled_at:
                raise TransportError(f"restore of {tp} stalled at offset {position} of {high}")
        cursor.at = (tp, out[-1].offset + 1) if len(out) >= limit else None
        return out
    except KafkaError as exc:
        cursor.at = None
        raise TransportError(f"restore of {tp} failed: {exc}") from exc


async def _end_moved(reader: Any, ktp: Any, high: int, cursor: ReadCursor) -> int:
    """The partition's end now if it moved past ``high``, else 0."""
    now = int((await reader.end_offsets([ktp]))[ktp])
    if now > high:
        cursor.high = now
        return now
    return 0


class ChangelogFollower:
    """Follows changelog partitions through ``reader`` (groupless, ``read_committed``,
    ``auto_offset_reset`` earliest: a start before a partition's first offset reads from there).
    aiokafka's fetcher task fetches between calls; ``read`` takes what is already fetched."""

    def __init__(self, reader: Any) -> None:
        self._reader = reader
        self._places = FollowPlaces()

    async def read(self, starts: Mapping[TopicPartition, int], max_records: int) -> Followed:
        try:
            return await self._read(starts, max_records)
        except KafkaError as exc:
            self._places.clear()  # where the client stands is unknown now: the next read assigns afresh
            raise TransportError(f"following the changelog failed: {describe(exc)}") from exc

    async def _read(self, starts: Mapping[TopicPartition, int], max_records: int) -> Followed:
        seek, drop = self._places.plan(starts)
        followed = self._places.followed()
        if seek or drop:
            # assign() replaces the assignment and forgets every position: put each partition
            # kept back where it was, and each new one at its start.
            self._reader.assign([_ktp(tp) for tp in followed])
            for tp in followed:
                self._reader.seek(_ktp(tp), seek.get(tp, self._places.position(tp)))
        if not followed:
            return Followed()
        out: list[Record] = []
        for ktp, messages in (await self._reader.getmany(timeout_ms=0, max_records=max_records)).items():
            tp = TopicPartition(ktp.topic, ktp.partition)
            out.extend(as_record(m) for m in messages if self._places.take(tp, m.offset))
        for tp in followed:
            self._places.at(tp, await self._reader.position(_ktp(tp)))  # past transaction markers
            if (high := self._reader.highwater(_ktp(tp))) is not None:
                self._places.end(tp, high)
        return Followed(out, self._places.lag())


def _ktp(tp: TopicPartition) -> KafkaTopicPartition:
    return KafkaTopicPartition(tp.topic, tp.partition)


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
