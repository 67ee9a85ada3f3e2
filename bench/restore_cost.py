"""What restoring dedupe marks from the changelog costs per mark, without Kafka (issue 12).

Builds one partition's changelog records exactly as ``bench/restart.py:write_changelog`` groups
them (per checkpoint ``batch // partitions`` ids spread over that partition's keys, one
``mark_records`` call per key), then folds and applies them into a fresh ``PartitionStore`` in
chunks of ``--chunk`` records, as the worker restores between polls (records are made chunk by
chunk, so peak RSS is one chunk's, not the whole log's). Prints JSON: µs per mark for
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
from collections.abc import Iterator
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from bench.input import partition_of
from bench.restart import keys_for
from pit_streams.contract.keys import Key
from pit_streams.state.changelog import mark_records, restore_changes
from pit_streams.state.store import PartitionStore
from pit_streams.transport.base import Record

TTL_MS = 7 * 24 * 3600 * 1000


class Changelog:
    """Partition 0's changelog records for its share of ``ids``, made on demand, chunk by chunk
    (so peak RSS is one chunk's, as in a worker, not the whole log's)."""

    def __init__(self, ids: int, *, partitions: int, batch: int, keys: int, expired: float = 0.0,
                 seed: int = 11) -> None:
        self._rng = random.Random(seed)
        self._keys = [k for k in keys_for(keys) if partition_of(k.text.encode(), partitions) == 0]
        self._per_checkpoint = max(1, batch // partitions)
        self._ts = Timestamp()
        self._ts.GetCurrentTime()
        self._left = ids
        self._pending: list[Record] = []
        self.records = self.bytes = 0
        self.build_s = 0.0  # spent in mark_records: the live checkpoint's cost
        self._expired = expired
        self._groups: list[bytes] = []

    def _tombstones(self) -> None:
        """The sweep's tombstones of the oldest ``expired`` share of groups, after every group: a
        restore meets them chunks after the groups themselves."""
        for record_key in self._groups[:int(len(self._groups) * self._expired)]:
            self._pending.append(Record("cl", 0, self.records, record_key, None))
            self.records += 1
            self.bytes += len(record_key)
        self._groups = []

    def chunks(self, size: int) -> Iterator[list[Record]]:
        while self._left or self._pending:
            while self._left and len(self._pending) < size:
                self._checkpoint()
            if not self._left and self._groups:
                self._tombstones()
            chunk, self._pending = self._pending[:size], self._pending[size:]
            yield chunk

    def _checkpoint(self) -> None:
        """One checkpoint's records, grouped as ``bench/restart.py:write_changelog`` groups them."""
        rng = self._rng
        grouped: dict[Key, list[tuple[str, str, str]]] = {}
        for _ in range(min(self._per_checkpoint, self._left)):
            key = rng.choice(self._keys)
            grouped.setdefault(key, []).append(("", str(uuid.UUID(int=rng.getrandbits(128), version=4)), "0" * 32))
            self._left -= 1
        t0 = time.perf_counter()
        made = [mark_records(key, marks, producer="bench@1", ts=self._ts) for key, marks in grouped.items()]
        self.build_s += time.perf_counter() - t0
        for records in made:
            for record_key, value, _ in records:
                self._pending.append(Record("cl", 0, self.records, record_key.encode(), value))
                self._groups.append(record_key.encode())
                self.records += 1
                self.bytes += len(record_key) + len(value)


def restore(log: Changelog, path: Path, chunk: int) -> tuple[float, float]:
    """Fold and apply ``log`` in chunks into a fresh store at ``path``: (fold s, apply s)."""
    store = PartitionStore(path)
    fold = apply = 0.0
    try:
        for part in log.chunks(chunk):
            t0 = time.perf_counter()
            restored = restore_changes(part, TTL_MS)
            t1 = time.perf_counter()
            store.apply(restored.changes, part[-1].offset)
            apply += time.perf_counter() - t1
            fold += t1 - t0
            if restored.unreadable:
                raise SystemExit(f"{restored.unreadable} record(s) unreadable: the bench builds them wrong")
            del restored
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
    p.add_argument("--expired", type=float, default=0.0,
                   help="share of mark groups tombstoned at the log's end (0..1): restores meet them chunks later")
    args = p.parse_args(argv)
    if args.ids < 1 or args.chunk < 1 or not 0 <= args.expired <= 1:
        p.error("--ids and --chunk must be at least 1, --expired between 0 and 1")
    log = Changelog(args.ids, partitions=args.partitions, batch=args.batch, keys=args.keys, expired=args.expired)
    start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory(prefix="restore-cost-") as tmp:
        fold_s, apply_s = restore(log, Path(tmp) / "p0", args.chunk)
    per = 1e6 / args.ids
    print(json.dumps({
        "ids": args.ids,
        "chunk": args.chunk,
        "expired": args.expired,
        "records": log.records,
        "changelog_mib": round(log.bytes / 2**20, 2),
        "mark_records_us_per_mark": round(log.build_s * per, 3),
        "fold_us_per_mark": round(fold_s * per, 3),
        "apply_us_per_mark": round(apply_s * per, 3),
        "restore_us_per_mark": round((fold_s + apply_s) * per, 3),
        "restore_s": round(fold_s + apply_s, 2),
        "start_rss_mib": round(start_rss / 1024, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
