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
from dataclasses import dataclass

from google.protobuf.message import Message
from pit.envelope.v1.envelope_pb2 import EventEnvelope

from pit_streams.app import App, HandlerSpec
from pit_streams.context import Context, with_event_id
from pit_streams.contract import (
    Accepted,
    Key,
    Reason,
    Rejection,
    derive_event_id,
    output_event_id,
    sha256_hex,
    unwrap,
)
from pit_streams.contract.envelope import wrap_bytes
from pit_streams.contract.keys import parse_key
from pit_streams.contract.naming import DEAD_LETTER_TOPIC
from pit_streams.contract.signing import TrustPolicy
from pit_streams.contract.timestamps import record_time
from pit_streams.errors import PitStreamsError
from pit_streams.runtime.batch import PartitionBatch, StateTooLarge
from pit_streams.runtime.deadletter import dead_letter_record
from pit_streams.runtime.deadletter_log import DeadLetterLog, one_line
from pit_streams.runtime.failures import (
    PROGRAMMING_ERROR,
    code_site,
    describe,
    is_suspected_programming_error,
)
from pit_streams.runtime.handler_call import call_with_timeout
from pit_streams.runtime.metrics import Metrics
from pit_streams.runtime.suspects import Suspicions
from pit_streams.state.store import Mark, mark_key
from pit_streams.transport.base import Headers, Record, TopicPartition

log = logging.getLogger("pit_streams.runtime")

_YIELD_EVERY = 63  # yield to the event loop every 64 records

Send = Callable[[str, bytes | None, bytes | None, Headers], None]


@dataclass(frozen=True, slots=True)
class Refusal:
    """A record whose side effects the broker refused for good, twice: it is dead-lettered with
    ``error``, ``bare`` (without its value and headers) once that dead letter was refused too."""

    error: str
    bare: bool = False


class HandlerStopped(PitStreamsError):
    """A handler failed for good and the app is configured to stop rather than dead-letter."""

    def __init__(self, record: Record, detail: str, *,
                 why: str = "handler failed and on_handler_error='stop'") -> None:
        # Logged and served on /healthz: a handler's message may quote data with newlines in it.
        super().__init__(f"{record.topic}[{record.partition}]@{record.offset}: {one_line(detail, 2000)}")
        self.record = record
        self.why = why


class Processor:
    def __init__(self, app: App, send: Send, metrics: Metrics, *, failure_budget_s: float = 60.0,
                 trust: TrustPolicy | None = None) -> None:
        self._app = app
        self._send = send
        self._metrics = metrics
        self._specs: Mapping[str, HandlerSpec] = app.handlers
        self._is_async = {t: inspect.iscoroutinefunction(s.fn) for t, s in self._specs.items()}
        self._allow_venue = {t: s.is_ops_topic for t, s in self._specs.items()}
        self._tenants = app.tenants
        self._backoff_s = app.retry_backoff.total_seconds()
        self._attempts = 1 + app.handler_retries
        self._timeout_s = app.handler_timeout.total_seconds()
        self._producer = app.producer
        # Time a batch may spend on failing handlers (attempts, backoff) before the rest of it is
        # left for the next poll: far inside max.poll.interval.ms, so a poison batch never gets
        # the worker evicted from its group.
        self._failure_budget_s = failure_budget_s
        self._trust = trust  # inputs that must be signed by their topic's owner (ADR 0008)
        self._budget = _Budget(failure_budget_s)
        self._tried: dict[tuple[str, int, int], int] = {}  # attempts made on records left for re-reading
        self._dead_letter_log = DeadLetterLog()
        self._suspicions = Suspicions()
        # Partition count per source topic, filled by Worker.start: placement is checked against it.
        self.partition_counts: dict[str, int] = {}

    def new_batch(self) -> None:
        """Start the failure budget of a poll batch (shared by all its partitions)."""
        self._budget = _Budget(self._failure_budget_s)
        self._dead_letter_log.tick()

    def idle(self) -> None:
        """A poll brought no record: still report dead-letter counts whose interval is over."""
        self._dead_letter_log.tick()

    def flush_log(self) -> None:
        """The worker stops: report the dead letters counted but not yet logged."""
        self._dead_letter_log.flush()

    async def process(
        self, records: list[Record], batch: PartitionBatch, undeliverable: Mapping[tuple[str, int, int], Refusal]
    ) -> int:
        """Handle ``records`` (all of partition ``batch.partition``, in offset order).

        Returns how many were handled: fewer than given when the batch's failure budget ran out
        (the rest must be read again) or a handler stopped the partition (``HandlerStopped``).
        """
        unwrapped: list[Accepted | Rejection | None] = []
        for rec in records:
            if rec.unreadable_headers:  # refused whatever it holds, MIGRATION_ONLY records included
                unwrapped.append(Rejection(Reason.BAD_HEADER_NAME, rec.unreadable_headers))
                continue
            spec = self._specs[rec.topic]
            if spec.migration_only:
                unwrapped.append(None)
                continue
            checked: Accepted | Rejection = unwrap(
                rec.value, rec.key, spec.payload_class, allow_venue=self._allow_venue[rec.topic],
                tenants=self._tenants, topic=rec.topic, partition=rec.partition, partition_counts=self.partition_counts)
            if self._trust is not None and isinstance(checked, Accepted):
                checked = self._trust.check(rec.topic, checked.envelope) or checked
            unwrapped.append(checked)
        # One mark key per accepted record, computed once: the store's multi-get and the dedupe use it.
        mks = [_mark_of(u) if isinstance(u, Accepted) else b"" for u in unwrapped]
        marks = [mk for mk in mks if mk]
        stored = dict(zip(marks, batch.stored_marks(marks), strict=True))

        handled = 0
        budget = self._budget
        # The last offset handled per topic, given to the batch once at the end (also when a
        # handler stops the partition): a TopicPartition's hash is a Python call, a str's is not.
        last: dict[str, int] = {}
        try:
            for index, (rec, outcome, mk) in enumerate(zip(records, unwrapped, mks, strict=True)):
                if not index & _YIELD_EVERY:
                    # Let the event loop breathe (aiokafka heartbeats there) during long batches.
                    await asyncio.sleep(0)
                if budget.left <= 0:
                    self._left_for_later(len(records) - index, batch.partition)
                    break
                refused = undeliverable.get((rec.topic, rec.partition, rec.offset)) if undeliverable else None
                if refused is not None:
                    detail = f"its side effects were refused for good: {refused.error}"
                    self._dead_letter(rec, Rejection(Reason.UNDELIVERABLE, detail), bare=refused.bare)
                elif isinstance(outcome, Rejection):
                    self._dead_letter(rec, outcome)
                else:
                    try:  # a MIGRATION_ONLY record (outcome None) goes through the same handler call
                        if outcome is None:
                            await self._migration(rec, batch)
                        else:
                            await self._dedupe_then_handle(rec, outcome, batch, mk, stored.get(mk))
                    except _BudgetSpent:
                        self._left_for_later(len(records) - index, batch.partition)
                        break
                last[rec.topic] = rec.offset
                handled += 1
        finally:
            for topic, offset in last.items():
                batch.done(TopicPartition(topic, batch.partition), offset)
        return handled

    def _left_for_later(self, count: int, partition: int) -> None:
        log.warning("handler failures used this batch's %.0f s budget: %d record(s) of partition %d are read again",
                    self._failure_budget_s, count, partition)

    async def _dedupe_then_handle(
        self, rec: Record, accepted: Accepted, batch: PartitionBatch, mk: bytes, stored: Mark | None
    ) -> None:
        env = accepted.envelope
        ts = env.ts
        event_ms = ts.seconds * 1000 + ts.nanos // 1_000_000  # Timestamp.ToMilliseconds, without its call
        batch.advance(event_ms, rec.timestamp_ms)
        mark = batch.live_mark(mk, stored)
        if mark is None:
            await self._handle(rec, accepted, batch, mk, event_ms)
        elif mark.digest == _digest(env) and mark.key == env.key:
            self._metrics.deduped += 1
        else:
            # The same id with another key or payload is not a duplicate: refusing it loudly is the
            # only answer that neither drops an event nor applies one twice.
            self._dead_letter(rec, Rejection(
                Reason.EVENT_ID_CONFLICT,
                f"event_id {env.event_id!r} was already processed with"
                f" {'key ' + mark.key if mark.key != env.key else 'another payload'}",
            ))

    def _dead_letter(self, rec: Record, rejection: Rejection, *, bare: bool = False) -> None:
        self._metrics.rejected[rejection.reason.value] += 1
        self._dead_letter_log.note(rejection.reason.value, f"{rec.topic}[{rec.partition}]@{rec.offset}",
                                   rejection.detail)
        dead = dead_letter_record(rec, rejection, group=self._app.group, producer=self._producer, bare=bare)
        self._send(DEAD_LETTER_TOPIC, dead.value, dead.key, dead.headers)

    async def _handle(self, rec: Record, accepted: Accepted, batch: PartitionBatch, mk: bytes, event_ms: int) -> None:
        """``mk``: the record's mark key; ``event_ms``: its envelope's ts in ms (both already computed)."""
        spec = self._specs[rec.topic]
        env = accepted.envelope
        metrics = self._metrics
        payload = accepted.payload
        error = ""
        reason = Reason.HANDLER_ERROR
        coords = (rec.topic, rec.partition, rec.offset)
        # Attempts carry over when a spent budget leaves the record for the next poll, so it is
        # dead-lettered after exactly the configured attempts, however the time was spent (ADR 0008).
        first = self._tried.pop(coords, 0) if self._tried else 0
        for attempt in range(first, self._attempts):
            if attempt:
                payload = self._fresh(spec, accepted)  # a failed attempt's mutations never leak
            ctx = Context(env, accepted.key, spec.emits, batch.state, topic=rec.topic, partition=rec.partition,
                          offset=rec.offset)
            started = time.perf_counter()
            try:
                if self._is_async[rec.topic]:
                    await call_with_timeout(spec.fn(payload, ctx), self._timeout_s)  # type: ignore[arg-type]
                else:
                    spec.fn(payload, ctx)
                encoded = self._encode_outputs(ctx, env) if ctx.outputs else []
                writes = ctx.state_writes
                if writes:
                    batch.check_state_size(accepted.key.text, writes)
            except _PERMANENT as exc:
                metrics.observe_handler(time.perf_counter() - started)
                error, reason = f"{type(exc).__name__}: {exc}", _PERMANENT_REASON[type(exc)]
                break  # the same input gives the same outputs: retrying cannot help
            except BaseException as exc:  # the one place a handler's failure is caught
                if _must_propagate(exc):
                    raise
                elapsed = time.perf_counter() - started
                metrics.observe_handler(elapsed)
                error = describe(exc) if not isinstance(exc, TimeoutError) else (
                    f"handler did not return within {self._timeout_s:g} s (App(handler_timeout=...))")
                if is_suspected_programming_error(exc):
                    self._suspected(rec, accepted, exc, error)
                self._budget.charge(elapsed)
                if attempt + 1 < self._attempts:
                    if self._budget.left <= 0:
                        self._tried[coords] = attempt + 1
                        raise _BudgetSpent from exc
                    metrics.handler_retries += 1
                    log.warning("handler for %s failed (attempt %d/%d): %s", rec.topic, attempt + 1, self._attempts,
                                one_line(error, 2000))
                    backoff = self._backoff_s * (2**attempt)
                    self._budget.charge(backoff)
                    await asyncio.sleep(backoff)
                    continue
                break
            metrics.observe_handler(time.perf_counter() - started)
            metrics.pending_input_ts_ms.append(event_ms)
            send = self._send
            for topic, key, value in encoded:
                send(topic, value, key, [])
            metrics.emitted += len(encoded)
            metrics.processed += 1
            self._suspicions.succeeded(rec.partition, rec.topic)
            batch.mark_processed(accepted.key, mk, env.dedupe_scope, env.event_id, _digest(env), writes)
            return
        if self._app.on_handler_error == "stop":
            raise HandlerStopped(rec, error)
        log.error("handler for %s failed, dead-lettering %s: %s", rec.topic, env.event_id, one_line(error, 2000))
        self._dead_letter(rec, Rejection(reason, error))

    def _suspected(self, rec: Record, accepted: Accepted, exc: BaseException, error: str) -> None:
        """Stop the partition once a second tenant fails at this code site; until then, the data path."""
        site = code_site(exc)
        key = accepted.key
        # A venue key (ops topics) has no tenant: each venue is its own source of data.
        source = key.tenant or f"venue/{key.venue}"
        tenants = self._suspicions.failed(rec.partition, rec.topic, site, type(exc).__name__, source)
        if tenants >= 2:
            raise HandlerStopped(
                rec, f"{error} at {site}; records of {tenants} tenants failed there with no success in between",
                why=PROGRAMMING_ERROR) from exc
        log.warning("suspected programming error in the handler for %s at %s: %s", rec.topic, one_line(site),
                    one_line(error, 2000))

    @staticmethod
    def _fresh(spec: HandlerSpec, accepted: Accepted) -> Message:
        payload = spec.payload_class()
        payload.ParseFromString(accepted.envelope.payload)
        return payload

    def _encode_outputs(self, ctx: Context, source: EventEnvelope) -> list[tuple[str, bytes, bytes]]:
        """Wrap every output. Its invariants hold by construction and were checked by ``ctx.emit``:
        the key is a parsed canonical key of the source's tenant, the fields are copied from it,
        the type is the declared one, and the hash is computed here."""
        encoded: list[tuple[str, bytes, bytes]] = []
        source_id = source.event_id
        correlation = source.correlation_id or source_id
        for ordinal, out in enumerate(ctx.outputs):
            event_id = output_event_id(self._app.name, source, ordinal)
            # The bytes were taken at emit time; a message without its own event_id gets the derived one.
            data = with_event_id(out.message_type, out.data, event_id) if out.needs_event_id else out.data
            env = wrap_bytes(data, out.payload_type, key=out.key, event_id=event_id, producer=self._producer,
                             ts=source.ts, topic=out.topic, causation_id=source_id, correlation_id=correlation)
            value = env.SerializeToString()
            if len(value) > MAX_OUTPUT_BYTES:
                raise OutputTooLarge(f"output {ordinal} to {out.topic} is {len(value)} bytes, over {MAX_OUTPUT_BYTES}")
            encoded.append((out.topic, out.key.text.encode(), value))
        return encoded

    async def _migration(self, rec: Record, batch: PartitionBatch) -> None:
        """MIGRATION_ONLY handlers get the raw bytes; outputs still leave as envelopes. Such records
        still pass the tenant allow-list and dedupe (by an id derived from their coordinates)."""
        spec = self._specs[rec.topic]
        key = parse_key(rec.key.decode("utf-8", "replace")) if rec.key else None
        if not isinstance(key, Key):
            self._dead_letter(rec, Rejection(Reason.KEY_INVALID, "MIGRATION_ONLY records still need a canonical key"))
            return
        if self._tenants is not None and key.tenant not in self._tenants:
            detail = f"tenant {key.tenant!r} is not served by this app"
            self._dead_letter(rec, Rejection(Reason.TENANT_NOT_ALLOWED, detail))
            return
        raw_id = derive_event_id(self._app.name, f"{rec.topic}/{rec.partition}/{rec.offset}", "raw")
        env = EventEnvelope(event_id=raw_id, key=str(key), tenant=key.tenant, series=key.series, cell=key.cell,
                            payload=rec.value or b"", ts=record_time(rec.timestamp_ms, batch.now_ms))  # log time
        payload = spec.payload_class()
        try:
            payload.ParseFromString(rec.value or b"")
        except Exception as exc:
            self._dead_letter(rec, Rejection(Reason.PAYLOAD_DECODE_ERROR, str(exc)))
            return
        accepted = Accepted(env, payload, key)
        mk = _mark_of(accepted)
        await self._dedupe_then_handle(rec, accepted, batch, mk, batch.stored_marks([mk])[0])


class _BudgetSpent(PitStreamsError):
    """The batch's failure budget ran out between two attempts: the record is read again."""


class OutputTooLarge(PitStreamsError):
    """An output envelope larger than a Kafka record may be: the same input always makes it."""


_PERMANENT: tuple[type[PitStreamsError], ...] = (OutputTooLarge, StateTooLarge)
_PERMANENT_REASON = {OutputTooLarge: Reason.OUTPUT_TOO_LARGE, StateTooLarge: Reason.STATE_TOO_LARGE}
# The largest output envelope sent; the broker's default per-record limit is 1,048,588 bytes.
MAX_OUTPUT_BYTES = 1_000_000


def _must_propagate(exc: BaseException) -> bool:
    """The interpreter's exit signals, and a cancellation of the worker itself, are not handler failures."""
    if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
        return True
    if isinstance(exc, asyncio.CancelledError):
        task = asyncio.current_task()
        return task is not None and task.cancelling() > 0
    return False


def _mark_of(accepted: Accepted) -> bytes:
    env = accepted.envelope
    return mark_key(accepted.key.tenant, env.dedupe_scope, env.event_id)


def _digest(env: EventEnvelope) -> str:
    return (env.payload_sha256.lower() or sha256_hex(env.payload))[:32]


class _Budget:
    """Seconds a batch may still spend on failing handlers (spent at ``left <= 0``: read per record,
    so an attribute rather than a call)."""

    __slots__ = ("left",)

    def __init__(self, seconds: float) -> None:
        self.left = seconds

    def charge(self, seconds: float) -> None:
        self.left -= seconds
