"""The librdkafka transport (confluent-kafka): the default, measured fastest (ADR 0001).

librdkafka calls block, so they run on one dedicated thread; rebalance callbacks fire on
that thread during ``consume`` and are only recorded there, then handed to the runtime on
the event loop before the records of the same poll — so a partition is restored before
any of its records is processed.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import confluent_kafka as ck
from confluent_kafka.admin import AdminClient

from pit_streams.security import TlsFiles
from pit_streams.transport.base import (
    AssignmentCallback,
    DeliveryError,
    Headers,
    Record,
    Subscription,
    TopicPartition,
    TransportError,
)

_QUEUE_FULL_WAIT_S = 0.05


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
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pit-librdkafka")
        self._consumer: Any = None
        self._producer: Any = None
        self._subscription: Subscription | None = None
        self._lock = threading.Lock()
        self._assignment_events: list[tuple[bool, list[TopicPartition]]] = []
        self._delivered: dict[TopicPartition, int] = {}
        self._failures: list[str] = []

    async def _blocking(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def start(self, subscription: Subscription | None) -> None:
        self._producer = ck.Producer(
            {
                **self._common,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 2,
                "batch.num.messages": 10_000,
                "queue.buffering.max.messages": 1_000_000,
                "message.timeout.ms": self._delivery_timeout_ms,
                "error_cb": self._on_error,
            }
        )
        await self._check_reachable()
        if subscription is None:
            return
        self._subscription = subscription
        self._consumer = ck.Consumer(
            {
                **self._common,
                "group.id": subscription.group,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                # Range keeps partition N of every subscribed topic on one member, so one
                # partition store serves all of them (co-partitioning).
                "partition.assignment.strategy": "range",
                "fetch.wait.max.ms": 50,
                "error_cb": self._on_error,
            }
        )
        self._consumer.subscribe(
            list(subscription.topics), on_assign=self._record_assign, on_revoke=self._record_revoke
        )

    async def _check_reachable(self) -> None:
        try:
            await self._blocking(self._producer.list_topics, None, 10.0)
        except ck.KafkaException as exc:
            raise TransportError(
                f"no Kafka broker answers at {self._common['bootstrap.servers']}: start one"
                " ('make kafka-up') or pass --broker / PIT_KAFKA_BOOTSTRAP"
            ) from exc

    def _on_error(self, err: Any) -> None:
        if err.fatal():
            with self._lock:
                self._failures.append(f"fatal client error: {err}")

    def _record_assign(self, _consumer: Any, partitions: list[Any]) -> None:
        with self._lock:
            self._assignment_events.append(
                (True, [TopicPartition(p.topic, p.partition) for p in partitions])
            )

    def _record_revoke(self, _consumer: Any, partitions: list[Any]) -> None:
        with self._lock:
            self._assignment_events.append(
                (False, [TopicPartition(p.topic, p.partition) for p in partitions])
            )

    async def _dispatch_assignments(self) -> None:
        with self._lock:
            events, self._assignment_events = self._assignment_events, []
        assert self._subscription is not None
        for assigned, tps in events:
            callback: AssignmentCallback = (
                self._subscription.on_assigned if assigned else self._subscription.on_revoked
            )
            result = callback(tps)
            if inspect.isawaitable(result):
                await result

    async def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        messages = await self._blocking(self._consumer.consume, max_records, timeout_s)
        await self._dispatch_assignments()
        records: list[Record] = []
        for m in messages:
            if m.error() is not None:
                if m.error().code() == ck.KafkaError._PARTITION_EOF:
                    continue
                raise TransportError(f"consume failed: {m.error()}")
            records.append(
                Record(m.topic(), m.partition(), m.offset(), m.key(), m.value(),
                       list(m.headers() or ()), m.timestamp()[1])
            )
        return records

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._failures.append(f"{msg.topic()}: {err.str()}")
            return
        tp = TopicPartition(msg.topic(), msg.partition())
        offset = msg.offset()
        if offset > self._delivered.get(tp, -1):
            self._delivered[tp] = offset

    def send(
        self, topic: str, value: bytes | None, key: bytes | None, headers: Headers, partition: int | None = None
    ) -> None:
        kwargs: dict[str, Any] = {"key": key, "headers": headers or None, "on_delivery": self._on_delivery}
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                self._producer.produce(topic, value, **kwargs)
                return
            except BufferError:
                # The local queue is full: serve delivery reports to make room.
                self._producer.poll(_QUEUE_FULL_WAIT_S)

    async def flush(self) -> dict[TopicPartition, int]:
        remaining = await self._blocking(self._producer.flush, self._delivery_timeout_ms / 1000 + 5)
        delivered, self._delivered = self._delivered, {}
        failures, self._failures = self._failures, []
        if remaining:
            failures.append(f"{remaining} record(s) still unacknowledged after the delivery timeout")
        if failures:
            raise DeliveryError("; ".join(sorted(set(failures))[:5]))
        return delivered

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if not offsets:
            return
        tps = [ck.TopicPartition(tp.topic, tp.partition, offset) for tp, offset in offsets.items()]
        try:
            await self._blocking(lambda: self._consumer.commit(offsets=tps, asynchronous=False))
        except ck.KafkaException as exc:
            raise TransportError(f"commit failed: {exc}") from exc

    async def seek(self, offsets: Mapping[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            await self._blocking(self._consumer.seek, ck.TopicPartition(tp.topic, tp.partition, offset))

    async def read_partition(self, tp: TopicPartition, start_offset: int) -> list[Record]:
        return list(await self._blocking(self._read_partition_blocking, tp, start_offset))

    def _read_partition_blocking(self, tp: TopicPartition, start_offset: int) -> list[Record]:
        reader = ck.Consumer(
            {**self._common, "group.id": "pit-streams-restore", "enable.auto.commit": False,
             "enable.partition.eof": True}
        )
        try:
            low, high = reader.get_watermark_offsets(ck.TopicPartition(tp.topic, tp.partition), 10.0)
            start = max(start_offset, low)
            if start >= high:
                return []
            reader.assign([ck.TopicPartition(tp.topic, tp.partition, start)])
            out: list[Record] = []
            while True:
                batch = reader.consume(10_000, 1.0)
                for m in batch:
                    if m.error() is not None:
                        if m.error().code() == ck.KafkaError._PARTITION_EOF:
                            if m.offset() >= high or (out and out[-1].offset >= high - 1):
                                return out
                            continue
                        raise TransportError(f"restore of {tp} failed: {m.error()}")
                    out.append(Record(m.topic(), m.partition(), m.offset(), m.key(), m.value()))
                    if m.offset() >= high - 1:
                        return out
        finally:
            reader.close()

    async def partitions_for(self, topic: str) -> int:
        admin = AdminClient(self._common)
        meta = await self._blocking(admin.list_topics, topic, 10.0)
        info = meta.topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            raise TransportError(f"topic {topic} does not exist: run 'pit-streams topics apply'")
        return len(info.partitions)

    async def stop(self) -> None:
        try:
            if self._consumer is not None:
                await self._blocking(self._consumer.close)
            if self._producer is not None:
                await self._blocking(self._producer.flush, 10.0)
        finally:
            self._thread.shutdown(wait=True)


