"""CPU per record without a broker: the raw loop's per-record work against pit-streams' real loop.

    python -m bench.hotpath [--fills 20000] [--reps 5] [--profile 15] [--only raw|pit]

Both sides get the bench's own fills (``bench.input.fills``: ~10 % byte-identical redeliveries,
64 keys over 8 partitions), fed in rounds of ``--batch`` records (a poll batch):

* raw: ``bench.work.Worker.process`` per record and ``batch_done`` per round — what
  ``bench/contenders/raw_confluent.py`` does between ``consume`` and ``produce``;
* pit: ``Worker.run`` over the memory transport with the bench app (``bench.contenders.pit_app``),
  the loop production runs — dedupe, handler, outputs, checkpoint, changelog and store writes.

CPU is ``time.process_time`` (every thread of the process, RocksDB's included) around the work
only, best of ``--reps`` interleaved repetitions, each on fresh stores. Neither side pays Kafka:
the raw side's outputs go to a list; pit's go to the memory transport, whose own cost (appending
records, building ``Record``s) is pit's here and shown separately with ``--profile``.

The digests name every output and changelog record's bytes: a change meant to cut CPU must leave
them as they are. Reports, never asserts (ADR 0001).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import io
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.contenders import pit_app
from bench.input import fills, partition_of
from bench.work import Worker as RawWorker
from pit_streams.runtime.metrics import Metrics
from pit_streams.runtime.worker import Worker, WorkerSettings
from pit_streams.transport.memory import MemoryBroker, MemoryTransport

# A fixed clock: the same fills, ids and changelog bytes on every run, so the digests compare.
BASE_NS = 1_780_000_000_000_000_000

Input = list[tuple[bytes, int, bytes]]  # (record key, partition, value)


@dataclass
class Run:
    cpu_s: float
    outputs: int
    digest: str


def make_input(distinct: int, dup_ratio: float, partitions: int) -> Input:
    out: Input = []
    for key, value, _ in fills(distinct=distinct, dup_ratio=dup_ratio, topic=pit_app.INPUT, base_ns=BASE_NS):
        raw = str(key).encode()
        out.append((raw, partition_of(raw, partitions), value))
    return out


def rounds(records: Input, size: int) -> list[Input]:
    return [records[i:i + size] for i in range(0, len(records), size)]


def run_raw(batches: list[Input]) -> Run:
    with tempfile.TemporaryDirectory(prefix="hotpath-raw-") as tmp:
        worker = RawWorker(producer="bench-raw@0.1", out_topic=pit_app.OUTPUT, dedupe_dir=Path(tmp) / "dedupe")
        process = worker.process
        sent: list[tuple[bytes, bytes]] = []
        cpu = 0.0
        for batch in batches:
            start = time.process_time()
            for key, _, value in batch:
                out = process(value, key)
                if out is not None:
                    sent.append(out)
            worker.batch_done()
            cpu += time.process_time() - start
        worker.close()
    digest = hashlib.sha256(b"".join(k + v for k, v in sent)).hexdigest()[:16]
    return Run(cpu, len(sent), digest)


def run_pit(batches: list[Input], partitions: int, batch_size: int) -> Run:
    return asyncio.run(_run_pit(batches, partitions, batch_size))


async def _run_pit(batches: list[Input], partitions: int, batch_size: int) -> Run:
    app = pit_app.app
    broker = MemoryBroker()
    for topic in {*app.reads(), *app.writes()}:
        broker.create_topic(topic, partitions)
    with tempfile.TemporaryDirectory(prefix="hotpath-pit-") as tmp:
        worker = Worker(app, MemoryTransport(broker), WorkerSettings(Path(tmp), batch_size=batch_size), Metrics())
        await worker.start()
        await worker.run(idle_exit_s=0)  # assignment and the (empty) stores' restores: not timed
        cpu = 0.0
        for batch in batches:
            for key, partition, value in batch:
                broker.append(pit_app.INPUT, value, key, [], partition)
            start = time.process_time()
            await worker.run(idle_exit_s=0)
            cpu += time.process_time() - start
        await worker.stop()
    h = hashlib.sha256()
    for topic in (pit_app.OUTPUT, app.changelog_topic):
        for rec in broker.records(topic):
            h.update(b"%d %d " % (rec.partition, rec.offset) + (rec.key or b"") + b"\0" + (rec.value or b"\0\0"))
    if broker.records("pit.v1.ops.dead_letter"):
        raise SystemExit("the bench input was dead-lettered: the comparison would be meaningless")
    return Run(cpu, len(broker.records(pit_app.OUTPUT)), h.hexdigest()[:16])


def profile(name: str, fn: Callable[[], Run], records: int, top: int) -> None:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    stats = pstats.Stats(prof)
    calls = sum(s[1] for s in stats.stats.values())
    total = sum(s[2] for s in stats.stats.values())
    transport = sum(s[2] for (path, _, _), s in stats.stats.items()
                    if path.endswith("transport/memory.py"))
    print(f"\n== {name}: cProfile, {calls / records:.1f} calls per record;"
          f" memory transport {100 * transport / total:.1f} % of self time (not Kafka's cost)")
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    lines = out.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls"))
    print("\n".join(lines[start:start + top + 1]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fills", type=int, default=20_000, help="distinct fills (redeliveries come on top)")
    p.add_argument("--dup-ratio", type=float, default=0.1)
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--batch", type=int, default=2000, help="records per poll batch (as make bench)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--only", choices=("raw", "pit"), help="run one side (e.g. under valgrind)")
    p.add_argument("--profile", type=int, default=0, metavar="N", help="then print cProfile's top N (self time)")
    args = p.parse_args()

    records = make_input(args.fills, args.dup_ratio, args.partitions)
    batches = rounds(records, args.batch)
    n = len(records)
    sides: dict[str, Callable[[], Run]] = {
        "raw": lambda: run_raw(batches),
        "pit": lambda: run_pit(batches, args.partitions, args.batch),
    }
    if args.only:
        sides = {args.only: sides[args.only]}
    print(f"{n} records ({args.fills} distinct), {args.partitions} partitions, rounds of {args.batch},"
          f" {args.reps} interleaved reps; CPU = process_time, no broker (memory transport for pit)")
    cpu: dict[str, list[float]] = {name: [] for name in sides}
    last: dict[str, Run] = {}
    for _ in range(args.reps):
        for name, fn in sides.items():
            last[name] = fn()
            cpu[name].append(last[name].cpu_s)
    for name, run in last.items():
        best, median = min(cpu[name]), statistics.median(cpu[name])
        print(f"{name}: best {1e6 * best / n:6.2f} us/record, median {1e6 * median / n:6.2f};"
              f" {run.outputs} outputs, digest {run.digest}")
    if len(cpu) == 2:
        print(f"pit / raw (best): {min(cpu['pit']) / min(cpu['raw']):.2f}x")
    if args.profile:
        for name, fn in sides.items():
            profile(name, fn, n, args.profile)


if __name__ == "__main__":
    main()
