"""One partition's records through the contract, dedupe and the handler — in offset order.

Every record ends in exactly one of: processed (outputs queued, id marked), deduped,
or dead-lettered. A rejection is a value; a handler's exception is caught here and
nowhere else.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable, Mapping

from pit.envelope.v1.envelope_pb2 import EventEnvelope

from pit_streams.app import DEAD_LETTER_TOPIC, App, HandlerSpec
from pit_streams.context import Context, with_event_id
from pit_streams.contract import Accepted, Key, Reason, Rejection, derive_event_id, unwrap
from pit_streams.contract.envelope import wrap_bytes
from pit_streams.contract.keys import parse_key
from pit_streams.runtime.batch import PartitionBatch
from pit_streams.runtime.deadletter import dead_letter_record
from pit_streams.runtime.metrics import Metrics
from pit_streams.transport.base import Headers, Record, TopicPartition

log = logging.getLogger("pit_streams.runtime")

_YIELD_EVERY = 63  # yield to the event loop every 64 records

Send = Callable[[str, bytes | None, bytes | None, Headers], None]


class HandlerStopped(Exception):
    """A handler failed for good and the app is configured to stop rather than dead-letter."""

    def __init__(self, record: Record, detail: str) -> None:
        super().__init__(f"{record.topic}[{record.partition}]@{record.offset}: {detail}")
        self.record = record


class Processor:
    def __init__(self, app: App, send: Send, metrics: Metrics) -> None:
        self._app = app
        self._send = send
        self._metrics = metrics
        self._specs: Mapping[str, HandlerSpec] = app.handlers
        self._is_async = {t: inspect.iscoroutinefunction(s.fn) for t, s in self._specs.items()}
        self._allow_venue = {t: s.is_ops_topic for t, s in self._specs.items()}
        self._tenants = app.tenants
        self._backoff_s = app.retry_backoff.total_seconds()
        self._attempts = 1 + app.handler_retries
        self._producer = app.producer
        # Partition count per source topic, filled by Worker.start: placement is checked against it.
        self.partition_counts: dict[str, int] = {}

    async def process(self, records: list[Record], batch: PartitionBatch) -> None:
        """Handle ``records`` (all of partition ``batch.partition``, in offset order)."""
        unwrapped: list[Accepted | Rejection | None] = []
        for rec in records:
            spec = self._specs[rec.topic]
            if spec.migration_only:
                unwrapped.append(None)
                continue
            unwrapped.append(
                unwrap(rec.value, rec.key, spec.payload_class, allow_venue=self._allow_venue[rec.topic],
                       tenants=self._tenants, topic=rec.topic, partition=rec.partition,
                       partition_counts=self.partition_counts)
            )
        ids = [u.envelope.event_id for u in unwrapped if isinstance(u, Accepted)]
        already = dict(zip(ids, batch.store.seen(ids, batch.now_ms), strict=True))

        next_offsets: dict[str, int] = {}
        try:
            for index, (rec, outcome) in enumerate(zip(records, unwrapped, strict=True)):
                if not index & _YIELD_EVERY:
                    # Let the event loop breathe (aiokafka heartbeats there) during long batches.
                    await asyncio.sleep(0)
                if outcome is None:
                    await self._migration(rec, batch)
                elif isinstance(outcome, Rejection):
                    self._dead_letter(rec, outcome)
                elif already.get(outcome.envelope.event_id) or batch.is_seen(outcome.envelope.event_id):
                    self._metrics.deduped += 1
                else:
                    await self._handle(rec, outcome, batch)
                next_offsets[rec.topic] = rec.offset + 1
        finally:
            # Even when a handler stops the partition, what was done before it counts.
            for topic, offset in next_offsets.items():
                batch.done(TopicPartition(topic, batch.partition), offset - 1)

    def _dead_letter(self, rec: Record, rejection: Rejection) -> None:
        self._metrics.rejected[rejection.reason.value] += 1
        if rejection.reason is Reason.WRONG_PARTITION:
            count = self._metrics.rejected[rejection.reason.value]
            if not count & (count - 1):  # loud, but on the 1st, 2nd, 4th, 8th, ... only: a producer sends many
                log.error("%d record(s) on the wrong partition so far, e.g. %s[%d]@%d: %s", count, rec.topic,
                          rec.partition, rec.offset, rejection.detail)
        dead = dead_letter_record(rec, rejection, group=self._app.group, producer=self._producer)
        self._send(DEAD_LETTER_TOPIC, dead.value, dead.key, dead.headers)

    async def _handle(self, rec: Record, accepted: Accepted, batch: PartitionBatch) -> None:
        spec = self._specs[rec.topic]
        env = accepted.envelope
        metrics = self._metrics
        error = ""
        for attempt in range(self._attempts):
            ctx = Context(env, accepted.key, spec.emits, batch, topic=rec.topic, partition=rec.partition,
                          offset=rec.offset)
            started = time.perf_counter()
            try:
                result = spec.fn(accepted.payload, ctx)
                if self._is_async[rec.topic]:
                    await result  # type: ignore[misc]
                encoded = self._encode_outputs(ctx, env) if ctx.outputs else []
            except Exception as exc:  # the one place a handler's failure is caught
                metrics.handler_seconds_total += time.perf_counter() - started
                metrics.handler_calls += 1
                error = f"{type(exc).__name__}: {exc}"
                if attempt + 1 < self._attempts:
                    metrics.handler_retries += 1
                    log.warning("handler for %s failed (attempt %d/%d): %s", rec.topic, attempt + 1, self._attempts,
                                error)
                    await asyncio.sleep(self._backoff_s * (2**attempt))
                continue
            metrics.handler_seconds_total += time.perf_counter() - started
            metrics.handler_calls += 1
            send = self._send
            for topic, key, value in encoded:
                send(topic, value, key, [])
            metrics.emitted += len(encoded)
            metrics.processed += 1
            batch.mark_processed(accepted.key, env.event_id, ctx.state_writes)
            return
        if self._app.on_handler_error == "stop":
            raise HandlerStopped(rec, error)
        log.error("handler for %s failed %d times, dead-lettering %s: %s", rec.topic, self._attempts, env.event_id,
                  error)
        self._dead_letter(rec, Rejection(Reason.HANDLER_ERROR, error))

    def _encode_outputs(self, ctx: Context, source: EventEnvelope) -> list[tuple[str, bytes, bytes]]:
        """Wrap every output. Its invariants hold by construction and were checked by ``ctx.emit``:
        the key is a parsed canonical key of the source's tenant, the fields are copied from it,
        the type is the declared one, and the hash is computed here."""
        encoded: list[tuple[str, bytes, bytes]] = []
        source_id = source.event_id
        correlation = source.correlation_id or source_id
        for ordinal, out in enumerate(ctx.outputs):
            event_id = derive_event_id(self._app.name, source_id, ordinal)
            # The bytes were taken at emit time; a message without its own event_id gets the derived one.
            data = with_event_id(out.message_type, out.data, event_id) if out.needs_event_id else out.data
            env = wrap_bytes(data, out.payload_type, key=out.key, event_id=event_id, producer=self._producer,
                             ts=source.ts, topic=out.topic, causation_id=source_id, correlation_id=correlation)
            encoded.append((out.topic, out.key.text.encode(), env.SerializeToString()))
        return encoded

    async def _migration(self, rec: Record, batch: PartitionBatch) -> None:
        """MIGRATION_ONLY handlers get the raw bytes; outputs still leave as envelopes."""
        spec = self._specs[rec.topic]
        key = parse_key(rec.key.decode("utf-8", "replace")) if rec.key else None
        if not isinstance(key, Key):
            self._dead_letter(rec, Rejection(Reason.KEY_INVALID, "MIGRATION_ONLY records still need a canonical key"))
            return
        raw_id = derive_event_id(self._app.name, f"{rec.topic}/{rec.partition}/{rec.offset}", "raw")
        env = EventEnvelope(event_id=raw_id, key=str(key), tenant=key.tenant, series=key.series, cell=key.cell)
        env.ts.FromMilliseconds(rec.timestamp_ms or int(time.time() * 1000))
        payload = spec.payload_class()
        try:
            payload.ParseFromString(rec.value or b"")
        except Exception as exc:
            self._dead_letter(rec, Rejection(Reason.PAYLOAD_DECODE_ERROR, str(exc)))
            return
        await self._handle(rec, Accepted(env, payload, key), batch)
