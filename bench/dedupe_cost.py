"""Dedupe store cost: RSS and disk of a rocksdict ``Rdict`` holding N 36-char UUID keys.

Run in its own process per size (``python -m bench.dedupe_cost --keys N --dir D``) so its RSS is
its own; prints one JSON line. Keys are written the way the contenders write them: raw bytes
mode, one ``WriteBatch`` per ``--batch`` keys, an 8-byte timestamp as the value.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import struct
import sys
import time
import uuid
from pathlib import Path


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(root, name)).st_size
    return total


def measure(n: int, path: Path, batch: int, seed: int = 5) -> dict[str, object]:
    from rocksdict import Options, Rdict, WriteBatch

    rng = random.Random(seed)
    rss_start = _status_kb("VmRSS")
    db = Rdict(str(path), options=Options(raw_mode=True))
    stamp = struct.pack(">q", time.time_ns())
    sample: list[bytes] = []
    t0 = time.monotonic()
    done = 0
    while done < n:
        wb = WriteBatch(raw_mode=True)
        for _ in range(min(batch, n - done)):
            k = str(uuid.UUID(int=rng.getrandbits(128), version=4)).encode()
            wb.put(k, stamp)
            if len(sample) < 100_000 and rng.random() < 0.05:
                sample.append(k)
        db.write(wb)
        done += batch
    insert_s = time.monotonic() - t0
    rss_after_insert = _status_kb("VmRSS")
    db.flush()
    disk_flushed = dir_bytes(path)
    t1 = time.monotonic()
    db.compact_range(None, None)
    compact_s = time.monotonic() - t1
    disk_compacted = dir_bytes(path)
    # Lookups as the dedupe check does them: hits (duplicates) and misses (new ids).
    t2 = time.monotonic()
    hits = sum(1 for k in sample if db.get(k) is not None)
    misses = [str(uuid.UUID(int=rng.getrandbits(128), version=4)).encode() for _ in range(len(sample))]
    t3 = time.monotonic()
    found = sum(1 for k in misses if db.get(k) is not None)
    t4 = time.monotonic()
    live_sst = db.property_int_value("rocksdb.total-sst-files-size")
    db.close()
    return {
        "keys": n,
        "key_bytes": 36,
        "insert_s": round(insert_s, 2),
        "inserts_per_s": round(n / insert_s),
        "compact_s": round(compact_s, 2),
        "rss_start_mb": round(rss_start / 1024, 1),
        "rss_after_insert_mb": round(rss_after_insert / 1024, 1),
        "peak_rss_mb": round(_status_kb("VmHWM") / 1024, 1),
        "disk_after_flush_mb": round(disk_flushed / 2**20, 1),
        "disk_after_compact_mb": round(disk_compacted / 2**20, 1),
        "sst_bytes_per_key": round((live_sst or disk_compacted) / n, 1),
        "lookup_hit_us": round((t3 - t2) / max(1, len(sample)) * 1e6, 2) if sample else None,
        "lookup_miss_us": round((t4 - t3) / max(1, len(misses)) * 1e6, 2) if misses else None,
        "hits_found": hits,
        "false_hits": found,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--keys", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--batch", type=int, default=10_000)
    args = p.parse_args()
    json.dump(measure(args.keys, Path(args.dir), args.batch), sys.stdout)
    print()


if __name__ == "__main__":
    main()
