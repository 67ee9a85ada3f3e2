"""The chaos run's table and ``bench/results/chaos.json``."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from devkit.broker import REPO_ROOT as REPO

RESULTS = REPO / "bench" / "results" / "chaos.json"

COLUMNS = [
    ("scenario", "scenario"), ("mode", "mode"), ("guarantee", "guarantee"), ("inputs", "valid_inputs"),
    ("outputs", "distinct_outputs"),
    ("lost", "lost"), ("dup.eff", "duplicate_effects"), ("raw.dup", "raw_duplicates"),
    ("wrong.val", "wrong_values"), ("reapplied", "reapplied"), ("unexp.out", "unexpected_outputs"),
    ("dead.let", "dead_letters"),
    ("dlq.bad", None), ("crashes", "unexpected_exits"), ("spawns", "worker_spawns"), ("secs", "seconds"),
    ("result", None),
]  # fmt: skip


def _row(r: dict[str, Any]) -> list[str]:
    f = r.get("figures") or {}
    out = []
    for title, key in COLUMNS:
        if title == "dlq.bad":
            v: Any = (f.get("dlq_missing", 0) + f.get("dlq_wrong_reason", 0) + f.get("dlq_unexpected", 0)
                      + f.get("dlq_altered", 0)) if f else "-"  # fmt: skip
        elif title == "result":
            v = "PASS" if r["passed"] else "FAIL"
        elif title == "guarantee":
            v = {"exactly_once": "eos", "at_least_once": "alo"}.get(r.get("guarantee", ""), "alo")
        elif key in r:
            v = r[key]
        else:
            v = f.get(key, "-")
        out.append(f"{v:.0f}" if isinstance(v, float) else str(v))
    return out


def table(results: Sequence[dict[str, Any]]) -> str:
    rows = [[t for t, _ in COLUMNS], *(_row(r) for r in results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in rows]  # fmt: skip
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def details(results: Sequence[dict[str, Any]]) -> str:
    """Anomalies and the checker's samples, per scenario."""
    out: list[str] = []
    for r in results:
        f = r.get("figures") or {}
        extra = []
        if f:
            extra.append(f"input records {f['input_records']} (valid {f['valid_inputs']}, expected dead letters"
                         f" {f['expected_dead_letters']}, expected dedupes {f['expected_duplicates']});"
                         f" output records {f['output_records']}")  # fmt: skip
            if f.get("lost"):
                extra.append(f"lost {f['lost']}: {f['lost_committed']} below the committed offset (data loss),"
                             f" {f['lost'] - f['lost_committed']} never committed (stuck)")  # fmt: skip
            if f.get("wrong_values"):
                extra.append(f"wrong values: {f['wrong_values']} output(s) in {f.get('wrong_cells', '?')} cell(s)")
            if f.get("reapplied") or f.get("uncommitted_output_records"):
                extra.append(f"inputs re-applied (an output re-sent with other bytes): {f.get('reapplied', 0)};"
                             f" output records only a read_uncommitted reader sees: "
                             f"{f.get('uncommitted_output_records', 0)}")  # fmt: skip
            if f.get("dlq_reasons"):
                extra.append(f"dead letters by reason: {f['dlq_reasons']}")
            if f.get("divergent_duplicates") or f.get("dlq_raw_duplicates") or f.get("expect_header_mismatches"):
                extra.append(f"divergent duplicates {f['divergent_duplicates']}, DLQ raw duplicates"
                             f" {f['dlq_raw_duplicates']}, expect-header mismatches {f['expect_header_mismatches']}")
        lines = [*extra, *(f"ANOMALY {a}" for a in r["anomalies"])]
        for what, samples in (f.get("samples") or {}).items():
            lines += [f"{what}: {s}" for s in samples[:5]]
        if lines:
            out.append(f"{r['scenario']} ({r['mode']}):")
            out += [f"  {ln}" for ln in lines]
    return "\n".join(out)


def write(results: Sequence[dict[str, Any]], argv: Sequence[str], path: Path = RESULTS, **meta: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(argv),
        "host": {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()},
        **meta,
        "passed": all(r["passed"] for r in results),
        "scenarios": list(results),
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    tmp.replace(path)
    return path
