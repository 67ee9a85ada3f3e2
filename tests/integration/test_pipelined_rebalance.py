"""Pipelined checkpoints on the real broker (ADR 0001, "Poll, then begin").

The worker handles batch N+1 while batch N's transaction is in flight. What must never happen is
a poll while a transaction is open: an eager rebalance could then complete before the transaction
resolves, the next owner restore a store without that batch, and the transaction's offsets still
commit — the batch's state effects would be applied twice. So these tests drive two workers of one
group through a rebalance at full speed, watch every poll and every transaction, and check each
input's state effect happened exactly once.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest
from itapp import make_app
from pit.events.v1.events_pb2 import NAVUpdateEvent
from support import Raw, Scenario, fill, new_worker, produce, read_all

from pit_streams.contract import Key, murmur2_partition
from pit_streams.runtime.worker import Worker, WorkerSettings
from pit_streams.transport.factory import make_transport

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(700)]  # three waits, generous under load

PARTITIONS = 2
CELLS = [Key("demo", "alpha", f"{i:04d}") for i in range(12)]
FILLS_PER_CELL = 250


class Watch:
    """Counts the transactions a worker has open, the polls made while one was, and the batches
    handled while one was (pipelining at work)."""

    def __init__(self, worker: Worker) -> None:
        self.open = 0
        self.polls_while_open = 0
        self.handled_while_open = 0
        transport: Any = worker.transport
        poll, commit = transport.poll, transport.commit

        async def watched_poll(max_records: int, timeout_s: float) -> Any:
            self.polls_while_open += self.open > 0
            return await poll(max_records, timeout_s)

        def watched_commit(*args: Any) -> Awaitable[dict[int, int]]:
            self.open += 1
            committing = asyncio.ensure_future(commit(*args))
            committing.add_done_callback(self._closed)
            return committing

        transport.poll, transport.commit = watched_poll, watched_commit
        processor: Any = worker._processor
        process = processor.process

        async def watched_process(*args: Any) -> int:
            self.handled_while_open += self.open > 0
            return int(await process(*args))

        processor.process = watched_process

    def _closed(self, _: object) -> None:
        self.open -= 1


async def _until(condition: Any, within_s: float, what: str, *tasks: asyncio.Task[int]) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        for task in tasks:
            if task.done():
                task.result()  # a worker that ended early: its error is the test's failure
        assert time.monotonic() < deadline, f"not within {within_s}s: {what}"
        await asyncio.sleep(0.05)  # checking a condition the workers advance, not waiting for one


# exactly_once needs the confluent transport (aiokafka has no group-fenced transactions).
@pytest.mark.parametrize(("transport", "guarantee"), [
    ("confluent", "at_least_once"), ("confluent", "exactly_once"), ("aiokafka", "at_least_once")])
async def test_a_rebalance_at_full_speed_applies_each_input_once(
    transport: str, guarantee: Any, kafka_bootstrap: str, tmp_path: Path
) -> None:
    sc = Scenario(kafka_bootstrap, partitions=PARTITIONS)
    sc.create()
    app = make_app(sc.name, sc.source, sc.output)
    inputs = [fill(key=cell) for _ in range(FILLS_PER_CELL) for cell in CELLS]
    raw = [Raw(r.key, r.value, r.headers, murmur2_partition(r.key, PARTITIONS), r.event_id) for r in inputs]
    # Half now, the rest once b owns a partition: b then has work there however fast a was.
    produce(kafka_bootstrap, sc.source, raw[: len(raw) // 2])

    def worker(name: str) -> Worker:
        # Small batches: many checkpoints, so the rebalance meets a batch waiting for its own.
        settings = WorkerSettings(tmp_path / name, batch_size=50, delivery_retry_backoff_s=0.1, guarantee=guarantee)
        return new_worker(transport, kafka_bootstrap, app, tmp_path / name, settings=settings,
                          transport=make_transport(transport, kafka_bootstrap, client_id=f"{app.producer}-{name}"))

    a, b = worker("a"), worker("b")
    watch_a, watch_b = Watch(a), Watch(b)
    stop = asyncio.Event()
    await a.start()
    run_a = asyncio.create_task(a.run(stop))
    try:
        await _until(lambda: a.metrics.committed_records >= len(inputs) // 8, 200, "an eighth committed by a", run_a)
        await b.start()  # joins the group: a's partitions move while a works at full speed
        run_b = asyncio.create_task(b.run(stop))
        try:
            await _until(lambda: bool(b._assigned), 200, "b was assigned a partition", run_a, run_b)
            produce(kafka_bootstrap, sc.source, raw[len(raw) // 2:])
            await _until(lambda: a.metrics.committed_records + b.metrics.committed_records >= len(inputs), 240,
                         "every input committed", run_a, run_b)
        finally:
            stop.set()
            await asyncio.gather(run_b, return_exceptions=True)
            await b.stop()
    finally:
        stop.set()
        await asyncio.gather(run_a, return_exceptions=True)
        await a.stop()

    assert watch_a.polls_while_open == 0 and watch_b.polls_while_open == 0
    assert b.metrics.committed_records > 0, "b never worked: the partitions did not move"
    assert watch_a.handled_while_open > 0, "no batch was handled while a transaction was in flight"
    # Each input's state effect exactly once: per cell, the outputs' distinct event ids carry the
    # running cash -1 .. -250 (M), each id one value. A batch applied twice shifts every later one.
    cash: dict[str, dict[str, int]] = defaultdict(dict)
    repeats = 0
    for out in read_all(kafka_bootstrap, sc.output):
        env = out.envelope
        value = NAVUpdateEvent.FromString(env.payload).cash_liquid_usd_micros
        seen = cash[env.key].setdefault(env.event_id, value)
        assert seen == value, f"{env.event_id} of {env.key} emitted with {seen} and with {value}"
        repeats += 1
    repeats -= sum(len(ids) for ids in cash.values())
    for cell in CELLS:
        assert sorted(cash[str(cell)].values()) == [-n * 1_000_000 for n in range(FILLS_PER_CELL, 0, -1)], cell
    if guarantee == "exactly_once":
        assert repeats == 0  # read_committed: no output of an aborted or dropped batch

