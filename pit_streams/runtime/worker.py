"""The batch loop: poll → checkpoint the last batch while this one is processed, until asked to stop.

A turn polls batch N+1, begins batch N's checkpoint, handles N+1 meanwhile and settles N; N+1
waits, handled, for the next poll. No poll runs while a checkpoint is in flight, and a poll returns
the partitions revoked and assigned since the last one ahead of its records (``Polled``), so an
assignment change is always learned with nothing in flight: a batch whose checkpoint has not begun
is then dropped and read again. A revoked partition's store is closed (kept as a standby with
``WorkerSettings.standby``, ``runtime/standby.py``); a newly assigned one is
paused and its store restored from the changelog a chunk per turn of the loop
(``runtime/restore.py``), and only then are its records processed. The transport never calls back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pit_streams.app import App
from pit_streams.contract.signing import Signer, TrustPolicy
from pit_streams.errors import ConfigError, DeclarationError
from pit_streams.runtime.batch import PartitionBatch
from pit_streams.runtime.checkpoint import Checkpoint, begin_checkpoint
from pit_streams.runtime.metrics import Metrics
from pit_streams.runtime.processor import HandlerStopped, Processor, Refusal
from pit_streams.runtime.restore import PendingRestore, Restores
from pit_streams.runtime.standby import Standby
from pit_streams.runtime.state_gap import group_offsets, report_state_gaps
from pit_streams.state.store import PartitionStore
from pit_streams.transport.base import (
    ClientFailed,
    DeliveryError,
    Fenced,
    Guarantee,
    Polled,
    Record,
    Subscription,
    TopicPartition,
    Transport,
    TransportError,
)

log = logging.getLogger("pit_streams.worker")


@dataclass
class Handled:
    """A poll batch handled: what its checkpoint carries, and what its success leaves to do."""

    records: list[Record]
    batches: dict[int, PartitionBatch] = field(default_factory=dict)
    finished: int = 0  # records it settles, counted as committed once the checkpoint holds
    again: dict[TopicPartition, int] = field(default_factory=dict)  # read these again from here
    stopped: HandlerStopped | None = None
    stopping: set[TopicPartition] = field(default_factory=set)  # partitions stopped once committed
    pending_ts: list[int] = field(default_factory=list)
    due_s: float = 0.0  # time.monotonic() by which its checkpoint should begin

    def due(self, now_s: float, max_records: int) -> bool:
        return now_s >= self.due_s or len(self.records) >= max_records


@dataclass
class InFlight:
    """A handled batch whose checkpoint is on its way."""

    checkpoint: Checkpoint
    handled: Handled
    begun_s: float  # time.monotonic() when its transaction was sent


@dataclass(frozen=True)
class WorkerSettings:
    data_dir: Path
    batch_size: int = 2000
    poll_timeout_s: float = 0.1
    # A handled batch takes in further polls' records for this long, or until it holds
    # ``batch_size`` records; then its checkpoint begins (ADR 0001, "A checkpoint per interval").
    checkpoint_interval_s: float = 0.1
    delivery_retry_backoff_s: float = 1.0
    guarantee: Guarantee | None = None  # None: the app's own
    # Seconds a poll batch may spend on failing handlers before the rest of it is read again.
    failure_budget_s: float = 60.0
    # Signs every envelope written (outputs, dead letters); checks signed inputs (ADR 0008).
    signer: Signer | None = None
    trust: TrustPolicy | None = None
    # Changelog records a restore reads and applies per turn of the loop, between polls.
    # ~1,000 records hold ~30k marks at a few checkpoints' worth per record: one chunk is a few
    # MiB in memory and ~0.1 s of work (bench/restore_cost.py), so a turn stays short.
    restore_chunk_records: int = 1000
    # Keep warm copies of the stores of partitions other members own (docs/adr/0012), applying at
    # most this many changelog records a turn, after owned restores and records.
    standby: bool = False
    standby_chunk_records: int = 250


class Worker:
    """Runs one app's handlers over a transport with every contract guarantee on."""

    def __init__(self, app: App, transport: Transport, settings: WorkerSettings, metrics: Metrics | None = None):
        if not app.handlers:
            raise DeclarationError(f"app {app.name!r} declares no handlers: add @{app.name}.handler(...)")
        self.app = app
        self.transport = transport
        self.settings = settings
        self.metrics = metrics or Metrics()
        self._stores: dict[int, PartitionStore] = {}
        self._assigned: set[TopicPartition] = set()
        self._committed: dict[TopicPartition, int] = {}
        self._stopped_partitions: set[TopicPartition] = set()
        # After a batch failed for good, records are taken one at a time to find the culprit; a
        # single record whose side effects the broker refuses twice is dead-lettered instead.
        self._isolating = 0
        self._refusals: dict[tuple[str, int, int], int] = {}
        self._undeliverable: dict[tuple[str, int, int], Refusal] = {}
        if app.signed_inputs and settings.trust is None:
            raise ConfigError(f"app {app.name!r} requires signed inputs on {', '.join(sorted(app.signed_inputs))}:"
                              " pass --trust-bundle (or set $PIT_TRUST_BUNDLE) to the owners' public keys")
        send = settings.signer.wrap_send(transport.send) if settings.signer is not None else transport.send
        self._processor = Processor(app, send, self.metrics, failure_budget_s=settings.failure_budget_s,
                                    trust=settings.trust)
        self._ttl_ms = int(app.dedupe_ttl.total_seconds() * 1000)
        self._restores = Restores(transport, app.changelog_topic, self._ttl_ms, self.metrics,
                                  settings.restore_chunk_records)
        self._standby = Standby(app, transport, settings.data_dir, self._ttl_ms, self.metrics,
                                enabled=settings.standby, chunk_records=settings.standby_chunk_records)
        self._in_group = False
        self._handled: Handled | None = None  # handled; its checkpoint begins after the next poll
        self._in_flight: InFlight | None = None
        self._rewound = False  # records come again (a batch dropped, a store restored) since the loop looked
        self.guarantee: Guarantee = settings.guarantee or app.guarantee

    @property
    def restoring(self) -> bool:
        """Whether a partition store is still being restored (its records come after)."""
        return bool(self._restores.pending)

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        await self.transport.start(
            Subscription(self.app.reads(), self.app.group, transactional_id=self._transactional_id(),
                         guarantee=self.guarantee)
        )
        await self._check_changelog_partitions()

    def _transactional_id(self) -> str:
        """Stable for this data directory: a restarted worker fences its predecessor's producer and
        aborts the transaction it left open, instead of making readers wait for its timeout."""
        path = self.settings.data_dir / self.app.group / "instance-id"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(uuid.uuid4().hex + "\n")
        return f"{self.app.group}-{path.read_text().strip()}"

    async def _check_changelog_partitions(self) -> None:
        changelog = await self.transport.partitions_for(self.app.changelog_topic)
        counts = {topic: await self.transport.partitions_for(topic) for topic in self.app.reads()}
        if len(set(counts.values())) > 1:
            from pit_streams.catalog import copartitioning_problem

            raise TransportError(copartitioning_problem(self.app.name, counts))
        self._processor.partition_counts.update(counts)
        for topic, source in counts.items():
            if source > changelog:
                raise TransportError(
                    f"{self.app.changelog_topic} has {changelog} partitions but {topic} has {source}:"
                    " give the changelog at least as many in infra/topics.yaml and run 'pit-streams topics apply'"
                )

    async def stop(self) -> None:
        self.metrics.ready = False
        self._processor.flush_log()
        try:
            if self._in_flight is not None:  # run() ended by an error: finish what is on its way
                with contextlib.suppress(TransportError):
                    await self._settle(self._in_flight)
            if self._handled is not None:  # never begun: dropped, read again by the next owner
                self._handled = None
                await self.transport.abort()
            await self.transport.stop()
        finally:
            self._close_stores()
            self._restores.close()
            self._standby.close()

    def _close_stores(self) -> None:
        for store in self._stores.values():
            store.close()
        self._stores.clear()

    async def run(self, stop: asyncio.Event | None = None, *, idle_exit_s: float | None = None) -> int:
        """Process batches until ``stop`` is set or, with ``idle_exit_s``, until polls have
        brought no record for that long (0: until the first empty poll, i.e. until idle).
        The in-flight batch always finishes and commits. Returns how many records were polled.

        The one loop: ``pit-streams worker`` and ``TestHarness`` both run it.
        """
        total = 0
        idle_since = time.monotonic()
        while stop is None or not stop.is_set():
            if n := await self._turn():
                total += n
                idle_since = time.monotonic()
            elif self.restoring or self._rewound:  # records set aside or rewound come back
                self._rewound = False
                idle_since = time.monotonic()
            elif idle_exit_s is not None and time.monotonic() - idle_since >= idle_exit_s:
                if self._handled is None:
                    break
                await self._commit_waiting()  # idle: not worth waiting out its interval; on failure, read again
        await self._commit_waiting()
        return total

    # -- one batch ---------------------------------------------------------------------------
    async def run_once(self) -> int:
        """Poll one batch and make it durable. Returns how many records it took on (records set
        aside while their partition restores count when they are read again)."""
        n = await self._turn()
        await self._commit_waiting()
        return n

    async def _turn(self) -> int:
        """Poll, and either handle the records into the batch waiting for its checkpoint, or —
        once that batch is due — begin its checkpoint, handle the records into a new batch while
        it is in flight, and settle it.

        Pipelined (ADR 0001, "Poll, then begin"): no poll ever runs while a transaction is open,
        so an assignment change is learned with nothing in flight, and a batch whose checkpoint
        has not begun when one is learned is dropped (read again, identical ids). A batch takes
        in polls for ``checkpoint_interval_s`` (ADR 0001, "A checkpoint per interval"), so most
        polls follow the handlers, not the transaction. A batch whose outcome decides what is
        read next (a spent failure budget's seek, a stopped partition, isolation of a refused
        record) does not wait: it is committed before the next poll."""
        waiting = self._handled
        size = 1 if self._isolating else self.settings.batch_size
        now = time.monotonic()
        due = waiting is not None and waiting.due(now, size)
        # A due batch waits for its checkpoint: only take what is already fetched, commit it if
        # none. While a store restores, the loop only passes through poll to stay in the group.
        if due or self._restores.pending or self._standby.behind:
            timeout = 0.0
        elif waiting is not None:
            timeout = min(self.settings.poll_timeout_s, max(0.0, waiting.due_s - now))
        else:
            timeout = self.settings.poll_timeout_s
        # A waiting batch takes in at most what it still has room for: a checkpoint (and its
        # exactly-once transaction) carries no more than ``batch_size`` records.
        room = size - len(waiting.records) if waiting is not None and not due else size
        polled = await self.transport.poll(room, timeout)
        if waiting is not None and (polled.revoked or polled.assigned or polled.joined):
            # The group moved before the waiting batch's checkpoint began: its partitions may be
            # another member's now, restored without it. Drop it, and this poll's records behind
            # it. A partition revoked (and maybe assigned back) reads on from its committed offset.
            self._handled = None
            await self._rebalanced(polled)
            kept = [r for r in waiting.records if TopicPartition(r.topic, r.partition) not in polled.revoked]
            await self._rewind([*kept, *polled.records], backoff=False)
            return 0
        await self._rebalanced(polled)
        if self._restores.pending:  # a chunk each; a small store is ready for this poll's records
            await self._restored(await self._restores.step())
        elif self._in_group:  # standby stores come after owned restores
            await self._standby.step({tp.partition for tp in self._assigned})
        records = polled.records
        if self._stopped_partitions:
            records = [r for r in records if TopicPartition(r.topic, r.partition) not in self._stopped_partitions]
        by_partition: dict[int, list[Record]] = defaultdict(list)
        for rec in records:
            by_partition[rec.partition].append(rec)
        if unready := by_partition.keys() - self._stores.keys():
            # Restoring, or the store was closed after a fence: read again once the store is ready.
            for partition in unready:
                await self._hold(partition, by_partition.pop(partition))
            records = [r for r in records if r.partition in by_partition]
        if not records:
            self._processor.idle()
            if waiting is not None and waiting.due(time.monotonic(), size):
                await self._commit_waiting()
            return 0
        if not due:  # the waiting batch (or a new one) takes these records in
            handled = await self._handle(by_partition, records, into=waiting or self._new_handled())
            flight = None
        else:
            assert waiting is not None
            self._handled = None
            flight = self._begin(waiting)
            handled = await self._handle(by_partition, records, into=self._new_handled(), previous=waiting.batches)
            if not await self._settle(flight, after=records):
                return len(records)  # the batch in flight failed: this one, built on it, is read again too
            for batch in handled.batches.values():
                batch.detach()
        if handled.again or handled.stopped is not None or self._isolating:
            self._handled = None
            await self._settle(self._begin(handled))  # what comes next depends on this outcome
        else:
            self._handled = handled
        return len(records)

    def _new_handled(self) -> Handled:
        return Handled([], due_s=time.monotonic() + self.settings.checkpoint_interval_s)

    async def _handle(self, by_partition: dict[int, list[Record]], records: list[Record], *, into: Handled,
                      previous: dict[int, PartitionBatch] | None = None) -> Handled:
        """Every partition's records through the processor into ``into``'s batches (made on a
        partition's first records, reading through ``previous``'s batch of the same partition —
        in flight — until it is durable)."""
        handled = into
        handled.records += records
        self._processor.new_batch()
        for partition, all_recs in by_partition.items():
            batch = handled.batches.get(partition)
            if batch is None:
                batch = PartitionBatch(partition, self._stores[partition], self._ttl_ms,
                                       previous=(previous or {}).get(partition))
            recs = self._not_yet_applied(all_recs, batch, handled.again)
            if not recs:
                continue
            handled.batches[partition] = batch
            try:
                done = await self._processor.process(recs, batch, self._undeliverable)
            except HandlerStopped as exc:
                handled.stopped = exc
                # The whole partition stops: records after the failure, of any topic the app reads
                # (not only those in this batch), stay uncommitted for the next owner (or this
                # worker after a restart). Those before it are committed by this checkpoint.
                handled.stopping.update(TopicPartition(t, partition) for t in self.app.reads())
                handled.finished += next((i for i, r in enumerate(recs) if r is exc.record), 0)
                continue
            handled.finished += done
            for rec in recs[done:]:  # left by a spent failure budget
                handled.again.setdefault(TopicPartition(rec.topic, rec.partition), rec.offset)
        handled.pending_ts += self.metrics.pending_input_ts_ms
        self.metrics.pending_input_ts_ms = []
        return handled

    def _begin(self, handled: Handled) -> InFlight:
        """Send ``handled``'s checkpoint; it is in flight until ``_settle``."""
        begun = begin_checkpoint(self.transport, list(handled.batches.values()),
                                 changelog_topic=self.app.changelog_topic, producer=self.app.producer,
                                 committed=self._committed)
        self._in_flight = InFlight(begun, handled, time.monotonic())
        return self._in_flight

    async def _commit_waiting(self) -> None:
        """Commit the batch waiting for its checkpoint, if any (nothing to overlap it with)."""
        waiting, self._handled = self._handled, None
        if waiting is not None:
            await self._settle(self._begin(waiting))

    async def _settle(self, flight: InFlight, after: Sequence[Record] = ()) -> bool:
        """Finish ``flight``'s checkpoint; False if it failed (its records, and ``after`` — a
        batch handled on top of it — are then read again)."""
        self._in_flight = None
        done = flight.handled
        records = done.records
        waited_from = time.monotonic()
        try:
            await flight.checkpoint.settle()
        except ClientFailed as exc:
            self.metrics.mark_unhealthy(str(exc))
            raise
        except DeliveryError as exc:
            self.metrics.delivery_failures += 1
            self.metrics.mark_unhealthy(f"broker did not acknowledge outputs: {exc}")
            log.error("batch not committed, will be re-processed: %s", exc)
            if exc.permanent:
                self._isolate(records, str(exc))
            await self._rewind([*records, *after])
            return False
        except Fenced as exc:
            # Another member owns (some of) these partitions now. Nothing of this batch is visible;
            # every store is re-read from the changelog before this worker touches it again.
            log.warning("fenced, batch aborted; partitions are re-read from the changelog: %s", exc)
            self._close_stores()
            await self._rewind([*records, *after])
            return False
        except TransportError as exc:
            log.warning("transaction aborted, re-reading the batch: %s", exc)
            await self._rewind([*records, *after])
            return False
        # Stopped only now: had the checkpoint failed, the records before the stop would be read
        # again, and the partition must not be filtered out before they are committed.
        self._stopped_partitions.update(done.stopping & self._assigned)
        if done.again:
            await self.transport.seek(done.again)
        if self._isolating:
            self._isolating = max(0, self._isolating - len(records))
            for rec in records:  # committed: what was counted against it is done with
                coords = (rec.topic, rec.partition, rec.offset)
                self._undeliverable.pop(coords, None)
                self._refusals.pop(coords, None)
        settled = time.monotonic()
        self.metrics.checkpoint_duration.observe(settled - flight.begun_s)
        self.metrics.checkpoint_wait.observe(settled - waited_from)
        self.metrics.batches += 1
        self.metrics.commits += 1
        self.metrics.committed_records += done.finished
        self.metrics.committed_now(int(time.time() * 1000), done.pending_ts)
        for tp, offset in self._committed.items():
            self.metrics.committed_offsets[str(tp)] = offset
        for tp, end in self.transport.end_offsets(sorted(self._assigned)).items():
            self.metrics.end_offsets[str(tp)] = end
        if done.stopped is not None:
            self.metrics.mark_unhealthy(f"{done.stopped.why}: {done.stopped}")
            log.error("partition %s stopped: %s", done.stopped.record.partition, done.stopped)
        elif not self.metrics.healthy and not self._stopped_partitions:
            self.metrics.healthy = True
        return True

    def _isolate(self, records: Sequence[Record], error: str) -> None:
        if len(records) > 1:
            self._isolating = max(self._isolating, len(records))
            return
        coords = (records[0].topic, records[0].partition, records[0].offset)
        self._refusals[coords] = self._refusals.get(coords, 0) + 1
        if self._refusals[coords] >= 2:
            del self._refusals[coords]
            # Its dead letter refused as well (a copy too large for the dead-letter topic): the
            # next one goes without the value, so the record gets past whatever the topic takes,
            # and still names the refusal that made it undeliverable first.
            first = self._undeliverable.get(coords)
            if first is None:
                self._undeliverable[coords] = Refusal(error)
            elif not first.bare:
                self._undeliverable[coords] = Refusal(f"{first.error}; its dead letter was refused too: {error}",
                                                      bare=True)
        self._isolating = max(self._isolating, 1)

    @staticmethod
    def _not_yet_applied(
        recs: list[Record], batch: PartitionBatch, again: dict[TopicPartition, int]
    ) -> list[Record]:
        """Drop records the state already reflects (a group offset expired or fell behind the
        changelog's); a partition with nothing else in the batch is moved to where the state is."""
        # All of one partition: the offset each topic's state reflects, looked up once per topic.
        resume = {topic: batch.resume_offset(TopicPartition(topic, batch.partition))
                  for topic in {r.topic for r in recs}}
        fresh = [r for r in recs if r.offset >= resume[r.topic]]
        if len(fresh) < len(recs):
            skipped = {TopicPartition(r.topic, r.partition) for r in recs} - {
                TopicPartition(r.topic, r.partition) for r in fresh}
            for tp in skipped:
                again[tp] = batch.resume_offset(tp)
        return fresh

    async def _rewind(self, records: Sequence[Record], *, backoff: bool = True) -> None:
        """Nothing was committed: re-read the batch's partitions that are still ours (after a
        pause, unless the batch was dropped for a rebalance rather than failed)."""
        self._rewound = True
        self.metrics.not_committed()
        await self.transport.abort()
        first: dict[TopicPartition, int] = {}
        for rec in records:
            tp = TopicPartition(rec.topic, rec.partition)
            if tp in self._assigned:
                first.setdefault(tp, rec.offset)
        await self.transport.seek(first)
        if backoff:
            await asyncio.sleep(self.settings.delivery_retry_backoff_s)

    # -- partitions come and go ----------------------------------------------------------------
    async def _begin_restores(self, partitions: set[int]) -> None:
        """Pause these partitions (every topic of each) and start restoring their stores."""
        begun = sorted(partitions - self._stores.keys() - self._restores.pending.keys())
        # Read before any changelog chunk: what the restored store must not be behind (state_gap.py).
        committed = await group_offsets(self.transport, sorted(tp for tp in self._assigned if tp.partition in begun))
        for partition in begun:
            self._restores.begin(partition, self._standby.store_for(partition), None if committed is None else
                                 {tp: o for tp, o in committed.items() if tp.partition == partition})
        await self.transport.pause(sorted(tp for tp in self._assigned if tp.partition in self._restores.pending))

    async def _hold(self, partition: int, records: list[Record]) -> None:
        if partition not in self._restores.pending:
            await self._begin_restores({partition})
        for rec in records:
            self._restores.hold(rec)

    async def _restored(self, done: list[tuple[int, PendingRestore]]) -> None:
        """Hand restored stores to the batch loop and read their partitions again."""
        for partition, restore in done:
            self._stores[partition] = restore.store
            report_state_gaps(restore.group_offsets, restore.store.source_offsets(), changelog=self.app.changelog_topic,
                              metrics=self.metrics)
            await self.transport.seek({tp: o for tp, o in restore.held.items() if tp in self._assigned})
            await self.transport.resume(sorted(tp for tp in self._assigned if tp.partition == partition))
            self._rewound = True
        self.metrics.ready = self._in_group and not self._restores.pending

    async def _rebalanced(self, polled: Polled) -> None:
        """Close the stores of partitions lost, then start restoring those gained, before any record."""
        if polled.revoked:
            self._assigned.difference_update(polled.revoked)
            self._stopped_partitions.difference_update(polled.revoked)
            still = {tp.partition for tp in self._assigned}
            for partition in {tp.partition for tp in polled.revoked} - still:
                self._standby.keep(partition, self._stores.pop(partition, None) or self._restores.cancel(partition))
        if polled.assigned:
            self._assigned.update(polled.assigned)
            await self._begin_restores({tp.partition for tp in polled.assigned})
        if polled.joined:
            self._in_group = True
        if polled.joined or polled.revoked or polled.assigned:
            # Ready = in the group with every assigned partition restored (possibly none: a spare member).
            self.metrics.ready = self._in_group and not self._restores.pending
