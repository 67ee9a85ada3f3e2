"""A duplicate event_id never yields a second output: in a batch, across batches, after a
restart, after the partition moved to a worker with an empty disk; and two live workers of
one group split the partitions and process every input once."""

from __future__ import annotations

from pathlib import Path

import pytest
from itapp import make_app
from support import (
    Scenario,
    committed,
    derived,
    fill,
    handled,
    new_worker,
    produce,
    read_all,
    run_until,
)

from pit_streams.contract import Key, murmur2_partition
from pit_streams.runtime.worker import Worker, WorkerSettings

pytestmark = pytest.mark.kafka


async def _drain(worker: Worker, target: int, what: str) -> None:
    await run_until([worker], lambda: handled(worker) >= target, what=what)


async def test_duplicate_event_id_yields_no_second_output(transport: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    sc = Scenario(kafka_bootstrap)
    sc.create()
    app = make_app(sc.name, sc.source, sc.output)
    a, b = fill(), fill()
    total = 0

    def outputs() -> list[str]:
        return [o.envelope.event_id for o in read_all(kafka_bootstrap, sc.output)]

    # 1. within one batch: a, a again, b
    w1 = new_worker(transport, kafka_bootstrap, app, tmp_path / "w1")
    await w1.start()
    try:
        produce(kafka_bootstrap, sc.source, [a, a, b])
        await _drain(w1, 3, "first batch")
        total += 3
        assert outputs() == [derived(app, a.event_id), derived(app, b.event_id)]
        assert w1.metrics.deduped >= 1

        # 2. across batches: a arrives again after its batch committed
        produce(kafka_bootstrap, sc.source, [a])
        await _drain(w1, 4, "redelivery in a later batch")
        total += 1
        assert len(outputs()) == 2
    finally:
        await w1.stop()

    # 3. after a restart: a new worker on the same data dir
    w1b = new_worker(transport, kafka_bootstrap, app, tmp_path / "w1")
    await w1b.start()
    try:
        produce(kafka_bootstrap, sc.source, [a])
        await _drain(w1b, 1, "redelivery after restart")
        total += 1
        assert w1b.metrics.deduped == 1 and len(outputs()) == 2
    finally:
        await w1b.stop()

    # 4. the partition moves to a second worker with an EMPTY data dir: dedupe comes from the changelog
    w2 = new_worker(transport, kafka_bootstrap, app, tmp_path / "w2")
    await w2.start()
    try:
        produce(kafka_bootstrap, sc.source, [b, a, fill()])
        await _drain(w2, 3, "redelivery on a fresh disk")
        total += 3
        assert w2.metrics.restored_records > 0
        assert w2.metrics.deduped == 2
        assert len(outputs()) == 3
    finally:
        await w2.stop()
    assert committed(kafka_bootstrap, sc.name, sc.source, 1) == {0: total}


async def test_two_live_workers_split_partitions_and_process_each_input_once(
    transport: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    sc = Scenario(kafka_bootstrap, partitions=4)
    sc.create()
    # Small batches with some work each: the rebalance lands while w1 has batches in flight.
    app = make_app(sc.name, sc.source, sc.output, work_s=0.01)
    w1, w2 = (
        new_worker(transport, kafka_bootstrap, app, tmp_path / d, settings=WorkerSettings(tmp_path / d, batch_size=10))
        for d in ("w1", "w2")
    )
    # Each key on its murmur2 partition, as the worker requires (anything else is wrong_partition).
    first = [fill(key=(k := Key("demo", "alpha", f"{i:04d}")), partition=murmur2_partition(k.text.encode(), 4))
             for i in range(20)]
    second = [fill(key=(k := Key("demo", "beta", f"{i:04d}")), partition=murmur2_partition(k.text.encode(), 4))
              for i in range(300)]
    assert {r.partition for r in first} == {r.partition for r in second} == {0, 1, 2, 3}
    await w1.start()
    try:
        # w1 alone owns every partition and processes a first wave
        produce(kafka_bootstrap, sc.source, first)
        await run_until([w1], lambda: handled(w1) >= len(first), what="first wave on w1")
        assert len(w1._assigned) == 4

        # a second wave is under way on w1 when w2 joins: the group rebalances, range splits 2 + 2
        produce(kafka_bootstrap, sc.source, second)
        await w2.start()
        try:
            await run_until(
                [w1, w2],
                lambda: handled(w1) + handled(w2) >= len(first) + len(second),
                within_s=90,
                what="second wave on both workers",
            )
            assert w2.metrics.processed > 0 and w1.metrics.processed > len(first)
            assert w1._assigned and w2._assigned and not (w1._assigned & w2._assigned)
        finally:
            await w2.stop()
    finally:
        await w1.stop()

    # Every batch was committed before its partition moved: no input was processed twice.
    assert w1.metrics.deduped == w2.metrics.deduped == 0
    ids = [o.envelope.event_id for o in read_all(kafka_bootstrap, sc.output)]
    expected = {derived(app, r.event_id) for r in [*first, *second]}
    assert len(ids) == len(expected) and set(ids) == expected
    ends = {p: sum(1 for r in [*first, *second] if r.partition == p) for p in range(4)}
    assert committed(kafka_bootstrap, sc.name, sc.source, 4) == ends
