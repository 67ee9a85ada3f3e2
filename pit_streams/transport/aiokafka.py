"""The pure-asyncio transport (aiokafka): no thread, no C library.

Three things differ from librdkafka and shape this module:

- ``AIOKafkaProducer.send`` is a coroutine (it may wait for topic metadata or for room in a
  batch). ``send`` stays synchronous, as the protocol says, by queueing the record; one drain
  task hands queued records to aiokafka strictly in ``send`` order (the changelog relies on
  that order within a partition), and ``flush`` waits for that task and then for every ack.
- The group coordinator runs in the background, so a rebalance can begin at any moment. The
  rebalance callbacks wait on ``_batch_lock``, which ``poll`` gives back on entry and takes again
  before it returns, so they run only inside ``poll``, as librdkafka's do. The runtime never polls
  while a checkpoint is in flight (ADR 0001): partitions are never revoked while it has work for
  them in flight or restores their stores.
- The callbacks only record what changed (``Rebalances``); ``poll`` returns it ahead of its
  records and the runtime restores or closes stores in its own loop. One thing stays in the
  assign callback: the per-partition transactional producers start there, fencing the previous
  owner before the runtime can read that partition's state back (ADR 0003).
- aiokafka updates its assignment before it calls the assign callback, so records of a new
  partition can be fetched while that callback still starts its producers; ``poll`` takes the
  same lock before returning, so the change always comes back with (or before) such records.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka import TopicPartition as KafkaTopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError, UnknownTopicOrPartitionError

from pit_streams.errors import ConfigError
from pit_streams.security import TlsFiles
from pit_streams.transport.aiokafka_changelog import (
    ChangelogFollower,
    ReadCursor,
    StateProducers,
    describe,
    read_to_end,
)
from pit_streams.transport.aiokafka_records import as_record, install_lenient_fetches
from pit_streams.transport.base import (
    MAX_RECORD_BYTES,
    ChangelogWrite,
    DeliveryError,
    Followed,
    Headers,
    PartialCommit,
    Polled,
    Rebalances,
    Record,
    Subscription,
    TopicPartition,
    TransportError,
    broker_unreachable,
    check_reachable,
)

_CONNECT_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 10.0
_COMMITTED_TIMEOUT_S = 10.0
_MAX_BATCH_BYTES = 512 * 1024  # per partition and request; the broker's default limit is 1 MiB
_Queued = tuple[str, bytes | None, bytes | None, Headers, int | None]


class AiokafkaTransport:
    def __init__(
        self,
        bootstrap: str,
        *,
        tls: TlsFiles | None = None,
        client_id: str = "pit-streams",
        delivery_timeout_ms: int = 30_000,
    ) -> None:
        install_lenient_fetches()  # a header name that is not UTF-8 must not break the fetch
        self._bootstrap = bootstrap
        self._common: dict[str, Any] = {"bootstrap_servers": bootstrap, "client_id": client_id}
        if tls is not None:
            self._common.update(security_protocol="SSL", ssl_context=tls.ssl_context())
        self._delivery_timeout_ms = delivery_timeout_ms
        self._producer: Any = None
        self._consumer: Any = None
        self._reader: Any = None  # groupless consumer for read_partition, made on first use
        self._follower: ChangelogFollower | None = None  # and for read_followed (its own consumer)
        self._follower_client: Any = None
        self._cursor = ReadCursor()
        self._subscription: Subscription | None = None
        # Producing: records wait in _queue until the drain task hands them to aiokafka.
        self._queue: deque[_Queued] = deque()
        self._drain_task: asyncio.Task[None] | None = None
        self._acks: list[asyncio.Future[Any]] = []
        self._failures: list[str] = []
        self._transient_failures = 0
        # Consuming: see the module docstring.
        self._batch_lock = asyncio.Lock()
        self._holding_batch = False
        self._assigned = asyncio.Event()
        self._rebalances = Rebalances()
        self._callback_error: BaseException | None = None  # aiokafka only logs a callback's error
        self._stopping = False
        self._state: StateProducers | None = None  # made with the subscription (it names the group)

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self, subscription: Subscription | None) -> None:
        if subscription is not None and subscription.guarantee == "exactly_once":
            raise ConfigError(
                "exactly_once needs the confluent transport (aiokafka has no KIP-447 group-fenced"
                " transactions): use --transport confluent or guarantee='at_least_once'"
            )
        await check_reachable(self._bootstrap)  # a clear error before aiokafka logs its own
        self._producer = self._new_producer()
        await self._start_client(self._producer)
        if subscription is None:
            return
        self._subscription = subscription
        self._state = StateProducers(subscription.group, self._new_producer, self._start_client, self._close_quietly)
        self._consumer = AIOKafkaConsumer(
            **self._common,
            group_id=subscription.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # Range keeps partition N of every subscribed topic on one member, so one
            # partition store serves all of them (co-partitioning).
            partition_assignment_strategy=(RangePartitionAssignor,),
            fetch_max_wait_ms=50,
            # Inputs written in transactions (an exactly-once upstream) count only once committed.
            isolation_level="read_committed",
            max_poll_interval_ms=300_000,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
        )
        await self._start_client(self._consumer)
        # Subscribing after start: a missing source topic is then reported by name
        # (``partitions_for``) instead of failing start after a metadata timeout.
        self._consumer.subscribe(list(subscription.topics), listener=_Listener(self))

    def _new_producer(self, **extra: Any) -> Any:
        return AIOKafkaProducer(
            **self._common,
            **extra,
            enable_idempotence=True,
            acks="all",
            linger_ms=2,
            max_batch_size=_MAX_BATCH_BYTES,
            # The broker's per-topic limit decides; the client must not refuse first (a dead
            # letter of a 1 MiB record is a little larger than 1 MiB).
            max_request_size=MAX_RECORD_BYTES,
            # Bounds both the wait for a topic's metadata (a missing topic) and each produce request.
            request_timeout_ms=self._delivery_timeout_ms,
        )

    async def _start_client(self, client: Any) -> None:
        try:
            await asyncio.wait_for(client.start(), _CONNECT_TIMEOUT_S)
        except (TimeoutError, KafkaConnectionError, OSError) as exc:
            await self._close_quietly(client)
            raise broker_unreachable(self._bootstrap) from exc
        except KafkaError as exc:
            await self._close_quietly(client)
            raise TransportError(f"cannot start a Kafka client for {self._bootstrap}: {exc}") from exc

    @staticmethod
    async def _close_quietly(client: Any) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.stop(), _STOP_TIMEOUT_S)

    async def stop(self) -> None:
        self._stopping = True
        self._release_batch()  # the coordinator may be waiting in the revoke callback
        try:
            if self._drain_task is not None:
                await asyncio.gather(self._drain_task, return_exceptions=True)
            if self._consumer is not None:
                await asyncio.wait_for(self._consumer.stop(), _STOP_TIMEOUT_S)
            if self._producer is not None:
                await asyncio.wait_for(self._producer.stop(), _STOP_TIMEOUT_S)
            if self._state is not None:
                await self._state.drop(self._state.partitions())
        finally:
            for reader in (self._reader, self._follower_client):
                if reader is not None:
                    await self._close_quietly(reader)
            self._consumer = self._producer = self._reader = self._follower_client = self._follower = None

    # -- consuming -----------------------------------------------------------------------------
    def _release_batch(self) -> None:
        if self._holding_batch:
            self._holding_batch = False
            self._batch_lock.release()

    async def poll(self, max_records: int, timeout_s: float) -> Polled:
        self._release_batch()  # nothing is in flight now: rebalances may proceed
        if self._callback_error is not None:
            error, self._callback_error = self._callback_error, None
            raise TransportError(f"partition assignment failed: {describe(error)}") from error
        if not self._assigned.is_set():
            # Joining or rebalancing: aiokafka's getmany would wait for the assignment
            # without a time limit; return empty-handed instead so the caller stays responsive.
            try:
                await asyncio.wait_for(self._assigned.wait(), timeout_s)
            except TimeoutError:
                return await self._hand_out({})
        try:
            fetched = await self._consumer.getmany(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        except KafkaError as exc:
            raise TransportError(f"consume failed: {exc}") from exc
        return await self._hand_out(fetched)

    async def _hand_out(self, fetched: Mapping[Any, Sequence[Any]]) -> Polled:
        """The recorded assignment changes and ``fetched``'s records of partitions still assigned.

        Holds the batch lock until the next poll, even with nothing to hand out: the runtime may
        still commit a batch it handled earlier, and no rebalance may run under that commit.
        Taking the lock also waits for an assign callback still starting the producers of
        partitions in ``fetched``.
        """
        await self._batch_lock.acquire()
        self._holding_batch = True
        assigned = self._consumer.assignment()
        records: list[Record] = []
        for ktp in sorted(fetched, key=lambda t: (t.topic, t.partition)):
            if ktp not in assigned:
                continue  # revoked while we waited: its new owner reads from the committed offset
            records.extend(
                as_record(m) for m in fetched[ktp]
            )
        return self._rebalances.take(records)

    async def _on_revoked(self, revoked: Sequence[Any]) -> None:
        self._assigned.clear()
        if self._stopping or self._state is None:
            return
        async with self._batch_lock:  # wait for the in-flight batch to be committed
            if not self._stopping:  # stop() releases the lock: the worker closes its stores itself
                self._rebalances.revoke(_ours(revoked))
            kept = {p.partition for p in self._consumer.assignment()} - {p.partition for p in revoked}
            await self._state.drop({p.partition for p in revoked} - kept)

    async def _on_assigned(self, assigned: Sequence[Any]) -> None:
        try:
            if self._stopping or self._state is None:
                return
            async with self._batch_lock:
                # Fence the previous owner of each partition (and abort what it left open) before
                # the runtime learns of the assignment and reads its state back: nothing the old
                # owner still sends can become visible after that.
                try:
                    await self._state.fence(p.partition for p in assigned)
                except Exception as exc:  # aiokafka would only log it: poll raises it instead
                    self._callback_error = exc
                    raise
                if assigned:  # as before: an empty assignment is not reported (no readiness)
                    self._rebalances.assign(_ours(assigned))
        finally:
            self._assigned.set()

    async def commit(
        self, changelog_topic: str, changelog: Mapping[int, Sequence[ChangelogWrite]],
        offsets: Mapping[TopicPartition, int],
    ) -> dict[int, int]:
        await self.flush()  # outputs first: the contract's order
        assert self._state is not None
        partitions = sorted(set(changelog) | {tp.partition for tp in offsets})
        results = await asyncio.gather(
            *(self._state.commit(p, changelog_topic, changelog.get(p, ()),
                                  {tp: o for tp, o in offsets.items() if tp.partition == p}) for p in partitions),
            return_exceptions=True,
        )
        written = {p: r for p, r in zip(partitions, results, strict=True) if isinstance(r, int)}
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise PartialCommit(written, errors[0])
        return written

    async def abort(self) -> None:
        return None  # outputs are never transactional here; state transactions end inside commit

    async def seek(self, offsets: Mapping[TopicPartition, int]) -> None:
        assigned = self._consumer.assignment()
        for tp, offset in offsets.items():
            ktp = KafkaTopicPartition(tp.topic, tp.partition)
            if ktp in assigned:
                self._consumer.seek(ktp, offset)

    async def committed(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        asked = [self._consumer.committed(KafkaTopicPartition(tp.topic, tp.partition)) for tp in tps]
        try:
            # aiokafka retries a retriable error without end: bounded here, as librdkafka's call is.
            offsets = await asyncio.wait_for(asyncio.gather(*asked), _COMMITTED_TIMEOUT_S)
        except (KafkaError, TimeoutError) as exc:
            raise TransportError(f"cannot read the group's committed offsets: {describe(exc)}") from exc
        return {tp: offset for tp, offset in zip(tps, offsets, strict=True) if offset is not None and offset >= 0}

    async def pause(self, tps: Sequence[TopicPartition]) -> None:
        if ours := self._assigned_of(tps):
            self._consumer.pause(*ours)

    async def resume(self, tps: Sequence[TopicPartition]) -> None:
        if ours := self._assigned_of(tps):
            self._consumer.resume(*ours)

    def _assigned_of(self, tps: Sequence[TopicPartition]) -> list[Any]:
        # A partition revoked since the runtime last polled is no longer the consumer's to pause.
        assigned = self._consumer.assignment()
        return [k for tp in tps if (k := KafkaTopicPartition(tp.topic, tp.partition)) in assigned]

    async def read_partition(self, tp: TopicPartition, start_offset: int, max_records: int | None = None) -> list[
            Record]:
        if self._reader is None:
            self._reader = AIOKafkaConsumer(
                **self._common, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=10,
                isolation_level="read_committed",
            )
            await self._start_client(self._reader)
        return await read_to_end(self._reader, tp, start_offset, max_records, self._cursor)

    async def read_followed(self, starts: Mapping[TopicPartition, int], max_records: int) -> Followed:
        if self._follower is None:
            if not starts:
                return Followed()
            self._follower_client = AIOKafkaConsumer(
                **self._common, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
                isolation_level="read_committed",
            )
            await self._start_client(self._follower_client)
            self._follower = ChangelogFollower(self._follower_client)
        return await self._follower.read(starts, max_records)

    def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        out: dict[TopicPartition, int] = {}
        for tp in tps:
            try:
                high = self._consumer.highwater(KafkaTopicPartition(tp.topic, tp.partition))
            except Exception:  # not (or no longer) assigned: no figure, which is fine for a metric
                continue
            if high is not None:
                out[tp] = int(high)
        return out

    async def partitions_for(self, topic: str) -> int:
        try:
            metadata = await self._producer.client.fetch_all_metadata()
        except KafkaError as exc:
            raise TransportError(f"cannot read the metadata of {topic}: {exc}") from exc
        partitions = metadata.partitions_for_topic(topic)
        if not partitions:
            raise TransportError(f"topic {topic} does not exist: run 'pit-streams topics apply'")
        return len(partitions)

    # -- producing -----------------------------------------------------------------------------
    def send(
        self, topic: str, value: bytes | None, key: bytes | None, headers: Headers, partition: int | None = None
    ) -> None:
        self._queue.append((topic, value, key, headers, partition))
        if self._drain_task is None or self._drain_task.done():
            self._drain_task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        """Hand queued records to aiokafka one by one, in ``send`` order."""
        while self._queue:
            topic, value, key, headers, partition = self._queue.popleft()
            try:
                ack = await self._producer.send(topic, value, key=key, partition=partition, headers=headers or None)
            except Exception as exc:  # KafkaError, KafkaTimeoutError, UnknownTopicOrPartitionError, ...
                self._failures.append(f"{topic}: {describe(exc)}")
                self._transient_failures += _is_outage(exc)
                continue
            self._acks.append(ack)

    async def flush(self) -> dict[TopicPartition, int]:
        while self._drain_task is not None and not self._drain_task.done():
            await asyncio.shield(self._drain_task)
        acks, self._acks = self._acks, []
        failures, self._failures = self._failures, []
        delivered: dict[TopicPartition, int] = {}
        acked_failures = 0
        for result in await asyncio.gather(*acks, return_exceptions=True):
            if isinstance(result, BaseException):
                failures.append(describe(result))
                acked_failures += 1
                self._transient_failures += _is_outage(result)
                continue
            tp = TopicPartition(result.topic, result.partition)
            if result.offset > delivered.get(tp, -1):
                delivered[tp] = result.offset
        if acked_failures:
            await self._reset_producer()
        transient, self._transient_failures = self._transient_failures, 0
        if failures:
            raise DeliveryError("; ".join(sorted(set(failures))[:5]), permanent=not transient)
        return delivered

    async def _reset_producer(self) -> None:
        """A record failed after aiokafka accepted it: the idempotent producer's sequence is
        broken, so the retry of the batch goes through a new producer (a new producer id)."""
        old, self._producer = self._producer, self._new_producer()
        await self._close_quietly(old)
        await self._start_client(self._producer)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, transport: AiokafkaTransport) -> None:
        self._transport = transport

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._transport._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._transport._on_assigned(assigned)


def _ours(partitions: Sequence[Any]) -> list[TopicPartition]:
    return [TopicPartition(p.topic, p.partition) for p in partitions]


def _is_outage(exc: BaseException) -> bool:
    """aiokafka marks the errors a retry can cure (timeouts, leaders moving, missing topics)."""
    return bool(getattr(exc, "retriable", True)) or isinstance(exc, UnknownTopicOrPartitionError | KafkaTimeoutError)
