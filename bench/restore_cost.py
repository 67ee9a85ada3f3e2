"""What restoring dedupe marks from the changelog costs per mark, without Kafka (issue 12).

Builds one partition's changelog records exactly as ``bench/restart.py:write_changelog`` groups
them (per checkpoint ``batch // partitions`` ids spread over that partition's keys, one
``mark_records`` call per key), then folds and applies them into a fresh ``PartitionStore`` in
chunks of ``--chunk`` records, as the worker restores between polls. Prints JSON: µs per mark for
building the records (``mark_records``, the live checkpoint's cost), for the fold
(``restore_changes``), for the apply (``PartitionStore.apply``), the total, and peak RSS.

    python -m bench.restore_cost --ids 1250000     # one partition of the 10 M restart bench
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import tempfile
import time
import uuid
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from bench.input import partition_of
from bench.restart import keys_for
from pit_streams.contract.keys import Key
from pit_streams.state.changelog import mark_records, restore_changes
from pit_streams.state.store import PartitionStore
from pit_streams.transport.base import Record

TTL_MS = 7 * 24 * 3600 * 1000


def build_records(ids: int, *, partitions: int, batch: int, keys: int, seed: int = 11) -> tuple[list[Record], float]:
    """Partition 0's changelog records for its share of ``ids``, and the seconds ``mark_records`` took."""
    rng = random.Random(seed)
    mine = [k for k in keys_for(keys) if partition_of(k.text.encode(), partitions) == 0]
    per_checkpoint = max(1, batch // partitions)
    ts = Timestamp()
    ts.GetCurrentTime()
    out: list[Record] = []
    spent = 0.0
    done = 0
    while done < ids:
        grouped: dict[Key, list[tuple[str, str, str]]] = {}
        for _ in range(min(per_checkpoint, ids - done)):
            key = rng.choice(mine)
            grouped.setdefault(key, []).append(("", str(uuid.UUID(int=rng.getrandbits(128), version=4)), "0" * 32))
            done += 1
        t0 = time.perf_counter()
        made = [mark_records(key, marks, producer="bench@1", ts=ts) for key, marks in grouped.items()]
        spent += time.perf_counter() - t0
        for records in made:
            for record_key, value, _ in records:
                out.append(Record("cl", 0, len(out), record_key.encode(), value))
    return out, spent


def restore(records: list[Record], path: Path, chunk: int) -> tuple[float, float]:
    """Fold and apply ``records`` in chunks into a fresh store at ``path``: (fold s, apply s)."""
    store = PartitionStore(path)
    fold = apply = 0.0
    try:
        for start in range(0, len(records), chunk):
            part = records[start:start + chunk]
            t0 = time.perf_counter()
            restored = restore_changes(part, TTL_MS)
            t1 = time.perf_counter()
            store.apply(restored.changes, part[-1].offset)
            apply += time.perf_counter() - t1
            fold += t1 - t0
            if restored.unreadable:
                raise SystemExit(f"{restored.unreadable} record(s) unreadable: the bench builds them wrong")
    finally:
        store.close()
    return fold, apply


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.restore_cost", description=__doc__.split("\n\n")[0])
    p.add_argument("--ids", type=int, default=1_250_000, help="dedupe ids in the partition's changelog")
    p.add_argument("--partitions", type=int, default=8, help="as bench/restart.py: ids per checkpoint per partition")
    p.add_argument("--batch", type=int, default=2000, help="as bench/restart.py: the checkpoint size")
    p.add_argument("--keys", type=int, default=64, help="as bench/restart.py: keys over all partitions")
    p.add_argument("--chunk", type=int, default=20_000, help="changelog records per fold + apply")
    args = p.parse_args(argv)
    if args.ids < 1 or args.chunk < 1:
        p.error("--ids and --chunk must be at least 1")
    records, build_s = build_records(args.ids, partitions=args.partitions, batch=args.batch, keys=args.keys)
    with tempfile.TemporaryDirectory(prefix="restore-cost-") as tmp:
        fold_s, apply_s = restore(records, Path(tmp) / "p0", args.chunk)
    per = 1e6 / args.ids
    print(json.dumps({
        "ids": args.ids,
        "records": len(records),
        "changelog_mib": round(sum(len(r.value or b"") + len(r.key or b"") for r in records) / 2**20, 2),
        "mark_records_us_per_mark": round(build_s * per, 3),
        "fold_us_per_mark": round(fold_s * per, 3),
        "apply_us_per_mark": round(apply_s * per, 3),
        "restore_us_per_mark": round((fold_s + apply_s) * per, 3),
        "restore_s": round(fold_s + apply_s, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
