"""The librdkafka transport (confluent-kafka): the default, measured fastest (ADR 0001).

librdkafka calls block, so they run on one dedicated thread; rebalance callbacks fire on
that thread during ``consume`` and are only recorded there, then returned by the same poll
ahead of its records (``Polled``) — so the runtime restores a partition before it processes
any of its records, and drops a revoked partition's store before it polls again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import confluent_kafka as ck
from confluent_kafka.admin import AdminClient

from pit_streams.security import TlsFiles
from pit_streams.transport.base import (
    ChangelogWrite,
    ClientFailed,
    DeliveryError,
    Followed,
    Headers,
    Polled,
    Rebalances,
    Record,
    Subscription,
    TopicPartition,
    TransportError,
    broker_unreachable,
    check_reachable,
)
from pit_streams.transport.confluent_config import consumer_config, producer_config, transactional_config
from pit_streams.transport.confluent_errors import Abort, Moved, SendFailures, message_headers, transaction_error
from pit_streams.transport.confluent_restore import ChangelogFollower, ChangelogReader
from pit_streams.transport.stall_watch import StallWatch

_QUEUE_FULL_WAIT_S = 0.05

log = logging.getLogger("pit_streams.transport")


class ConfluentTransport:
    def __init__(
        self,
        bootstrap: str,
        *,
        tls: TlsFiles | None = None,
        client_id: str = "pit-streams",
        delivery_timeout_ms: int = 30_000,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self._common: dict[str, Any] = {"bootstrap.servers": bootstrap, "client.id": client_id}
        if tls is not None:
            self._common.update(tls.librdkafka())
        self._common.update(extra or {})
        self._delivery_timeout_ms = delivery_timeout_ms
        # The consumer's calls and the transactions' run on threads of their own: a transaction
        # call stuck past its timeout (stall_watch.py) holds up no poll, seek or pause behind it.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pit-librdkafka")
        self._commit_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pit-librdkafka-txn")
        self._consumer: Any = None
        self._reader: ChangelogReader | None = None
        self._follower: ChangelogFollower | None = None
        self._producer: Any = None
        self._subscription: Subscription | None = None
        self._rebalances = Rebalances()
        self._delivered: dict[tuple[str, int], int] = {}
        self._failures = SendFailures()
        self._txn: Any = None  # the transactional producer (workers only)
        self._member: str | None = None  # the group member id our partitions were assigned to
        self._held: list[tuple[str, bytes | None, bytes | None, tuple[Any, ...], dict[str, Any]]] = []
        self._fatal = ""  # set by librdkafka's error callback: the client can do nothing more
        self._in_transaction = False
        self._watch = StallWatch()

    async def _blocking(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def _producer_config(self) -> dict[str, Any]:
        return producer_config(self._common, self._delivery_timeout_ms, self._on_error)

    async def start(self, subscription: Subscription | None) -> None:
        # librdkafka would retry (and log every attempt) for the whole timeout: probe first.
        await check_reachable(self._common["bootstrap.servers"])
        exactly_once = subscription is not None and subscription.guarantee == "exactly_once"
        if not exactly_once:
            config = self._producer_config()
            if subscription is not None:
                # A worker only needs its outputs' failures (any one fails the checkpoint): a
                # success report is a Python call per output record for nothing.
                config["delivery.report.only.error"] = True
            self._producer = ck.Producer(config)
            await self._check_reachable(self._producer)
        if subscription is None:
            self._produce = self._producer.produce
            return
        self._subscription = subscription
        self._txn = ck.Producer(transactional_config(self._producer_config(), subscription.transactional_id,
                                                     self._delivery_timeout_ms))
        try:
            await self._blocking(self._txn.init_transactions, 30.0)
        except ck.KafkaException as exc:
            raise TransportError(f"cannot start the transactional producer {subscription.transactional_id}:"
                                 f" {exc.args[0].str()}") from exc
        if exactly_once:
            self._producer = self._txn
        self._produce = self._hold_for_transaction if exactly_once else self._producer.produce
        self._consumer = ck.Consumer(consumer_config(self._common, subscription.group, self._on_error))
        self._consumer.subscribe(
            list(subscription.topics), on_assign=self._record_assign, on_revoke=self._record_revoke
        )

    async def _check_reachable(self, client: Any) -> None:
        try:
            await self._blocking(client.list_topics, None, 10.0)
        except ck.KafkaException as exc:
            raise broker_unreachable(self._common["bootstrap.servers"]) from exc

    def _on_error(self, err: Any) -> None:
        if err.fatal():
            self._fatal = f"fatal Kafka client error: {err}"

    def _record_assign(self, consumer: Any, partitions: list[Any]) -> None:
        self._member = consumer.memberid()
        self._rebalances.assign(TopicPartition(p.topic, p.partition) for p in partitions)

    def _record_revoke(self, _consumer: Any, partitions: list[Any]) -> None:
        self._rebalances.revoke(TopicPartition(p.topic, p.partition) for p in partitions)

    def _consume_available(self, max_records: int, timeout_s: float) -> list[Any]:
        """Wait up to ``timeout_s`` for the first message, then take what is already fetched.

        ``consume(n, timeout)`` alone waits for ``n`` messages or the whole timeout, which at a
        modest input rate adds the timeout to every record's latency.
        """
        first: list[Any] = self._consumer.consume(1, timeout_s)
        if not first or max_records <= 1:
            return first
        rest: list[Any] = self._consumer.consume(max_records - 1, 0)
        return first + rest

    async def poll(self, max_records: int, timeout_s: float) -> Polled:
        messages = await self._blocking(self._consume_available, max_records, timeout_s)
        # Taken after consume returned: every rebalance callback of that call has run (on the
        # librdkafka thread, which is idle now) and is in this poll's changes.
        polled = self._rebalances.take([])
        assigned: set[TopicPartition] | None = None
        if (polled.joined or polled.revoked) and messages:
            # Messages fetched before a revoke in the same consume call belong to a partition
            # that is no longer ours: its new owner reads it from the committed offset.
            current = await self._blocking(self._consumer.assignment)
            assigned = {TopicPartition(p.topic, p.partition) for p in current}
        records = polled.records
        for m in messages:
            if m.error() is not None:
                if m.error().code() == ck.KafkaError._PARTITION_EOF:
                    continue
                raise TransportError(f"consume failed: {m.error()}")
            if assigned is not None and TopicPartition(m.topic(), m.partition()) not in assigned:
                continue
            headers, unreadable = message_headers(m)
            records.append(
                Record(m.topic(), m.partition(), m.offset(), m.key(), m.value(), headers, m.timestamp()[1], unreadable)
            )
        return polled

    def _on_delivery(self, err: Any, msg: Any) -> None:
        # Called once per record sent, so it stays small: (topic, partition) tuples, no objects.
        if err is not None:
            self._failures.add(msg.topic(), err)
            return
        tp = (msg.topic(), msg.partition())
        offset = msg.offset()
        if offset > self._delivered.get(tp, -1):
            self._delivered[tp] = offset

    def send(
        self, topic: str, value: bytes | None, key: bytes | None, headers: Headers, partition: int | None = None
    ) -> None:
        while True:
            try:
                if partition is None:
                    self._produce(topic, value, key, headers=headers or None, on_delivery=self._on_delivery)
                else:
                    self._produce(topic, value, key, partition, headers=headers or None,
                                  on_delivery=self._on_delivery)
                return
            except BufferError:
                # The local queue is full: serve delivery reports to make room.
                self._producer.poll(_QUEUE_FULL_WAIT_S)
            except ck.KafkaException as exc:
                # Refused before it left (too large for the client, topic unknown): a failed send,
                # taken at the flush or the commit with the failed deliveries, classified the same way.
                self._failures.add(topic, exc.args[0])
                return

    async def flush(self) -> dict[TopicPartition, int]:
        return dict(await self._blocking(self._flush_blocking))

    def _flush_blocking(self) -> dict[TopicPartition, int]:
        self._await_acks()
        delivered = {TopicPartition(t, p): o for (t, p), o in self._delivered.items()}
        self._delivered = {}
        return delivered

    def _await_acks(self) -> None:
        """Every record sent so far acknowledged, or ``DeliveryError``."""
        remaining = self._producer.flush(self._delivery_timeout_ms / 1000 + 5)
        if self._fatal:
            raise ClientFailed(self._fatal)
        failed = self._failures.take()
        if remaining:
            failed.messages.append(f"{remaining} record(s) still unacknowledged after the delivery timeout")
        if failed.messages:
            raise DeliveryError(failed.summary(), permanent=failed.permanent(remaining))

    def _hold_for_transaction(self, topic: str, value: bytes | None, key: bytes | None, *args: Any,
                              **kwargs: Any) -> None:
        # Produced at commit: a transaction then lasts as long as the commit, not as long as the
        # batch's handlers (which may take longer than transaction.timeout.ms).
        self._held.append((topic, value, key, args, kwargs))

    def commit(
        self, changelog_topic: str, changelog: Mapping[int, Sequence[ChangelogWrite]],
        offsets: Mapping[TopicPartition, int],
    ) -> Awaitable[dict[int, int]]:
        # Taken now, on the loop's thread: outputs held after this call are the next transaction's.
        held, self._held = self._held, []
        future = asyncio.get_running_loop().run_in_executor(
            self._commit_thread, self._commit_blocking, held, changelog_topic, changelog, offsets)
        return self._committed(future)

    async def _committed(self, future: asyncio.Future[dict[int, int]]) -> dict[int, int]:
        return dict(await self._watch.result(future))

    def _commit_blocking(
        self, held: list[tuple[str, bytes | None, bytes | None, tuple[Any, ...], dict[str, Any]]],
        changelog_topic: str, changelog: Mapping[int, Sequence[ChangelogWrite]], offsets: Mapping[TopicPartition, int],
    ) -> dict[int, int]:
        txn = self._txn
        if self._fatal:
            raise ClientFailed(self._fatal)
        # The transaction is built while the outputs' acknowledgements are still on their way and
        # committed only after all of them arrived (the wait below): nothing of it is visible
        # before, so the order readers see stays outputs -> changelog + offsets (ADR 0003).
        try:
            txn.begin_transaction()
            self._in_transaction = True
            for topic, value, key, args, kwargs in held:
                self._produce_waiting(txn, topic, value, key, *args, **kwargs)
            for partition, records in changelog.items():
                for key, value in records:
                    self._produce_waiting(txn, changelog_topic, value, key, partition, on_delivery=self._on_delivery)
            self._send_offsets(txn, offsets)
            if self._producer is not txn:  # at-least-once: outputs and dead letters, every one acknowledged
                self._await_acks()
            remaining = txn.flush(self._delivery_timeout_ms / 1000 + 5)
            delivered, self._delivered = self._delivered, {}
            failed = self._failures.take()
            if remaining or failed.messages:
                detail = failed.summary() or f"{remaining} record(s) unacknowledged"
                if txn is self._producer and failed.permanent(remaining, changelog_topic=changelog_topic):
                    raise _outputs_refused(detail)
                raise Abort(detail)
            self._commit_with_retries(txn)
        except ClientFailed:
            raise
        except DeliveryError:
            self._abort_blocking()
            raise
        except (ck.KafkaException, Abort, Moved) as exc:
            refused = self._refusal_behind(txn, exc, changelog_topic)
            self._abort_blocking()
            if refused is not None:
                raise refused from exc
            raise transaction_error(exc) from exc
        except BaseException:  # anything else: nothing of the transaction may stay open
            self._abort_blocking()
            raise
        finally:
            self._in_transaction = False
        return {p: o for (t, p), o in delivered.items() if t == changelog_topic}

    def _send_offsets(self, txn: Any, offsets: Mapping[TopicPartition, int]) -> None:
        if not offsets:
            return
        tps = [ck.TopicPartition(tp.topic, tp.partition, o) for tp, o in offsets.items()]
        metadata = self._consumer.consumer_group_metadata()
        # librdkafka rejoins in the background: a member id other than the one these
        # partitions were assigned to means the group moved on while we worked.
        if self._consumer.memberid() != self._member:
            raise Moved(f"member {self._member} left the group while its batch was in flight")
        # With the consumer's group generation (KIP-447): the coordinator refuses the
        # offsets of a member the group has replaced, and the transaction cannot commit.
        with self._watch.call("send_offsets_to_transaction", 30.0):
            txn.send_offsets_to_transaction(tps, metadata, 30.0)

    def _refusal_behind(self, txn: Any, exc: Exception, changelog_topic: str) -> DeliveryError | None:
        """Exactly-once: the output refusal that put the transaction in its abortable state, when a
        later call (``send_offsets_to_transaction``, the commit) raised that state rather than it."""
        if txn is not self._producer or not isinstance(exc, ck.KafkaException) or not exc.args[0].txn_requires_abort():
            return None
        # The refusal's report was queued when its response set the state: serve it, without
        # waiting on anything in flight (an outage must not hold the abort up).
        txn.poll(0)
        failed = self._failures.take()
        if not failed.permanent(0, changelog_topic=changelog_topic):
            return None
        return _outputs_refused(failed.summary())

    def _produce_waiting(self, producer: Any, topic: str, *args: Any, **kwargs: Any) -> None:
        while True:
            try:
                producer.produce(topic, *args, **kwargs)
                return
            except BufferError:  # the local queue is full: serve delivery reports to make room
                producer.poll(_QUEUE_FULL_WAIT_S)
            except ck.KafkaException as exc:  # taken with the delivery failures below
                self._failures.add(topic, exc.args[0])
                return

    def _commit_with_retries(self, txn: Any) -> None:
        for _ in range(10):
            try:
                with self._watch.call("commit_transaction", 30.0):
                    txn.commit_transaction(30.0)
                return
            except ck.KafkaException as exc:
                # A timed-out commit may still complete: calling it again learns the outcome.
                if not exc.args[0].retriable():
                    raise
        # Neither committed nor aborted as far as we can tell: re-running the batch could repeat
        # it. A restart with the same transactional id settles the transaction one way or the other.
        raise ClientFailed("transaction outcome unknown after 10 commit attempts: restarting settles it")

    def _abort_blocking(self) -> None:
        if self._txn is None:
            return
        try:
            self._txn.abort_transaction(30.0)
        except ck.KafkaException as exc:
            err = exc.args[0]
            if err.fatal():
                raise ClientFailed(f"transactional producer failed for good: {err.str()}") from exc
            if err.code() != ck.KafkaError._STATE:
                # Not aborted (timed out, another call still in progress): the producer's
                # transaction is in an unknown state and every later transactional call conflicts
                # with the abort librdkafka still runs. Seen after a broker restart: the worker
                # retried for minutes without committing. A restart with the same transactional id
                # aborts it for certain (ADR 0003).
                raise ClientFailed(f"transaction abort did not complete: {err.str()}: restarting settles it") from exc
            # Nothing open (already aborted or never begun): nothing to undo.
        self._in_transaction = False
        self._delivered = {}
        self._failures.take()

    async def abort(self) -> None:
        self._held = []  # here, on the loop's thread, where outputs are held
        if self._txn is not None:
            await asyncio.get_running_loop().run_in_executor(self._commit_thread, self._abort_blocking)

    async def seek(self, offsets: Mapping[TopicPartition, int]) -> None:
        await self._blocking(self._seek_assigned, offsets)

    def _seek_assigned(self, offsets: Mapping[TopicPartition, int]) -> None:
        # librdkafka refuses to seek a partition revoked meanwhile (_STATE); its new owner reads it.
        assigned = {(p.topic, p.partition) for p in self._consumer.assignment()}
        for tp, offset in offsets.items():
            if (tp.topic, tp.partition) in assigned:
                self._consumer.seek(ck.TopicPartition(tp.topic, tp.partition, offset))

    async def committed(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        asked = [ck.TopicPartition(tp.topic, tp.partition) for tp in tps]
        try:
            # read_committed: librdkafka asks with require_stable (KIP-447), so a transaction still
            # committing these offsets is waited out rather than read half-done.
            answer = await self._blocking(self._consumer.committed, asked, 10.0)
        except ck.KafkaException as exc:
            raise TransportError(f"cannot read the group's committed offsets: {exc.args[0].str()}") from exc
        if failed := [f"{p.topic}[{p.partition}]: {p.error.str()}" for p in answer if p.error is not None]:
            raise TransportError(f"cannot read the group's committed offsets: {'; '.join(failed[:3])}")
        # A partition without a committed offset comes back with a negative (logical) one.
        return {TopicPartition(p.topic, p.partition): p.offset for p in answer if p.offset >= 0}

    async def pause(self, tps: Sequence[TopicPartition]) -> None:
        await self._blocking(self._pause_or_resume, self._consumer.pause, tps)

    async def resume(self, tps: Sequence[TopicPartition]) -> None:
        await self._blocking(self._pause_or_resume, self._consumer.resume, tps)

    def _pause_or_resume(self, call: Any, tps: Sequence[TopicPartition]) -> None:
        assigned = {(p.topic, p.partition) for p in self._consumer.assignment()}
        # A partition revoked since the runtime last polled is no longer the consumer's to pause.
        if ours := [ck.TopicPartition(tp.topic, tp.partition) for tp in tps if (tp.topic, tp.partition) in assigned]:
            call(ours)

    async def read_partition(self, tp: TopicPartition, start_offset: int, max_records: int | None = None) -> list[
            Record]:
        return list(await self._blocking(self._read_partition_blocking, tp, start_offset, max_records))

    def _read_partition_blocking(self, tp: TopicPartition, start_offset: int, max_records: int | None) -> list[Record]:
        if self._reader is None:
            # One reader for every restore: a new client per partition costs a connection and a
            # coordinator lookup each (~0.5 s), paid partition after partition.
            self._reader = ChangelogReader(ck.Consumer(self._changelog_reader_config(**{"fetch.wait.max.ms": 10})))
        return self._reader.read(tp, start_offset, max_records)

    async def read_followed(self, starts: Mapping[TopicPartition, int], max_records: int) -> Followed:
        if self._follower is None:
            if not starts:
                return Followed()
            # A standby follows for as long as the worker runs: fetching every 100 ms when there
            # is nothing new is fresh enough and spares the broker.
            self._follower = ChangelogFollower(ck.Consumer(self._changelog_reader_config(**{
                "fetch.wait.max.ms": 100, "auto.offset.reset": "earliest"})))
        followed: Followed = await self._blocking(self._follower.read, starts, max_records)
        return followed

    def _changelog_reader_config(self, **extra: Any) -> dict[str, Any]:
        # librdkafka wants a group.id and looks its coordinator up (Describe on the group), so use
        # the app's own group, which its principal may use. These readers only assign: they never
        # join the group and never commit.
        group = self._subscription.group if self._subscription is not None else self._common["client.id"]
        return {**self._common, "group.id": group, "enable.auto.commit": False, "enable.partition.eof": True,
                "isolation.level": "read_committed",
                # Reads take a chunk at a time: prefetching far past one (64 MiB by default) only
                # grows the worker's memory.
                "queued.max.messages.kbytes": 16_384, **extra}

    def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        out: dict[TopicPartition, int] = {}
        for tp in tps:
            _low, high = self._consumer.get_watermark_offsets(ck.TopicPartition(tp.topic, tp.partition), cached=True)
            if high is not None and high >= 0:
                out[tp] = int(high)
        return out

    async def partitions_for(self, topic: str) -> int:
        admin = AdminClient(self._common)
        meta = await self._blocking(admin.list_topics, topic, 10.0)
        info = meta.topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            raise TransportError(f"topic {topic} does not exist: run 'pit-streams topics apply'")
        return len(info.partitions)

    async def stop(self) -> None:
        if self._watch.stuck:  # the transaction's thread may never return: queue nothing behind it
            self._thread.shutdown(wait=False, cancel_futures=True)
            self._commit_thread.shutdown(wait=False, cancel_futures=True)
            return
        try:
            if self._consumer is not None:
                await self._blocking(self._consumer.close)
            if self._reader is not None:
                await self._blocking(self._reader.close)
            if self._follower is not None:
                await self._blocking(self._follower.close)
            if self._in_transaction:
                await self.abort()
            if self._producer is not None:
                try:
                    await self._blocking(self._producer.flush, 10.0)
                except ck.KafkaException as exc:
                    # A producer failed for good (exactly-once: INVALID_TXN_STATE after a broker
                    # outage) raises here too: the worker is already leaving with that failure,
                    # and nothing it held was committed. Stopping must not turn it into a traceback.
                    log.warning("producer flush at stop failed: %s", exc.args[0].str() if exc.args else exc)
        finally:
            self._thread.shutdown(wait=True)
            self._commit_thread.shutdown(wait=True)
            # librdkafka handles close when released
            self._consumer = self._producer = self._reader = self._follower = self._txn = None


def _outputs_refused(detail: str) -> DeliveryError:
    # Exactly-once: the outputs travel in the checkpoint's transaction. A refusal for good (too large
    # for the topic) is what at-least-once's _await_acks reports as permanent, so the worker isolates
    # and dead-letters the record instead of re-reading the batch forever.
    return DeliveryError(f"outputs refused, transaction aborted: {detail}", permanent=True)
