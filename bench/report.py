"""Summaries, goals, the stdout table, ``latest.json`` and ``latest.png``."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

#: (contender, compared with, minimum ratio) of records/s — printed as met / not met, never asserted
#: (issue 12). ``quix`` has its changelog on, like pit-streams; ``quix-eos`` is exactly-once.
THROUGHPUT_GOALS: tuple[tuple[str, str, float], ...] = (
    ("pit-streams-confluent", "raw-confluent", 0.9),
    ("pit-streams-aiokafka", "raw-aiokafka", 0.9),
    ("pit-streams-confluent", "quix", 2.0),
    ("pit-streams-confluent", "faust", 10.0),
    ("pit-streams-confluent-eos", "quix-eos", 1.3),
    ("pit-streams-confluent-eos", "pit-streams-confluent", 0.8),
)
#: (contender, compared with, maximum ratio) of CPU seconds per 100k records.
CPU_GOALS: tuple[tuple[str, str, float], ...] = (
    ("pit-streams-confluent", "raw-confluent", 1.15),
    ("pit-streams-aiokafka", "raw-aiokafka", 1.15),
)
LATENCY_GOAL_MS = 50.0
LATENCY_GOAL_CONTENDERS = ("pit-streams-confluent", "pit-streams-aiokafka")
#: p99 reported without a goal: outputs become visible only at each commit (interval in the note).
LATENCY_REPORTED = {
    "pit-streams-confluent-eos": "commits every 0.1 s (--checkpoint-interval-ms) or --batch-size records",
    "quix-eos": "commits every commit_interval = 5 s (Quix default)",
}
RESTART_GOAL_IDS = 10_000_000
RESTART_RSS_GOAL_MB = 150.0


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(contender: dict[str, Any]) -> None:
    """Fill a contender's summary fields from its runs (in place)."""
    runs = contender.get("runs", [])
    good = [r for r in runs if r["ok"] and r["records_per_s"]]
    contender["records_per_s_runs"] = [round(r["records_per_s"], 1) for r in good]
    contender["records_per_s_median"] = _median([r["records_per_s"] for r in good])
    contender["records_per_s_incl_startup_median"] = _median(
        [r["records_per_s_incl_startup"] for r in good if r["records_per_s_incl_startup"]]
    )
    contender["failed_runs"] = len(runs) - len(good)
    contender["peak_rss_mb"] = max((r["peak_rss_mb"] for r in runs), default=None)
    contender["cpu_s_per_100k_median"] = _median([r["cpu_s_per_100k"] for r in good if r["cpu_s_per_100k"]])
    contender["startup_s_median"] = _median([r["startup_s"] for r in good if r["startup_s"] is not None])


def add_ratios(contenders: dict[str, dict[str, Any]]) -> None:
    for c in contenders.values():
        base = contenders.get(c["baseline"], {})
        mine, theirs = c.get("records_per_s_median"), base.get("records_per_s_median")
        c["ratio_to_baseline"] = mine / theirs if mine and theirs else None


def goals(contenders: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name, other, minimum in THROUGHPUT_GOALS:
        a = contenders.get(name, {}).get("records_per_s_median")
        b = contenders.get(other, {}).get("records_per_s_median")
        ratio = a / b if a and b else None
        ceiling = _ceiling(contenders, name, other)
        out.append(
            {
                "goal": f"{name} >= {minimum:g}x {other} (records/s)" + ceiling[1],
                "value": round(ratio, 3) if ratio is not None else None,
                "met": None if ratio is None else ratio >= minimum,
                "ceiling_ratio": ceiling[0],
                "why_unknown": None if ratio is not None else _missing(contenders, (name, other)),
            }
        )
    for name, other, maximum in CPU_GOALS:
        a = contenders.get(name, {}).get("cpu_s_per_100k_median")
        b = contenders.get(other, {}).get("cpu_s_per_100k_median")
        ratio = a / b if a and b else None
        out.append(
            {
                "goal": f"{name} CPU s/100k <= {maximum:g}x {other}",
                "value": round(ratio, 3) if ratio is not None else None,
                "met": None if ratio is None else ratio <= maximum,
                "why_unknown": None if ratio is not None else _missing(contenders, (name, other)),
            }
        )
    for name in (*LATENCY_GOAL_CONTENDERS, *LATENCY_REPORTED):
        lat = contenders.get(name, {}).get("latency") or {}
        p99 = lat.get("p99_ms") if lat.get("ok") else None
        rate = lat.get("offered_rate", 5000)
        reported = LATENCY_REPORTED.get(name)
        floor = _floor(contenders, name, rate)
        out.append(
            {
                "goal": (f"{name} p99 at {rate:g} records/s, {reported}" if reported
                         else f"{name} p99 < {LATENCY_GOAL_MS:g} ms at {rate:g} records/s") + floor[1],
                "value": round(p99, 2) if p99 is not None else None,
                "met": None if p99 is None or reported else p99 < LATENCY_GOAL_MS,
                "reported": bool(reported),
                "floor_p99_ms": floor[0],
                "why_unknown": None if p99 is not None else (lat.get("status") or _missing(contenders, (name,))),
            }
        )
    return out


def _ceiling(contenders: dict[str, dict[str, Any]], name: str, other: str) -> tuple[float | None, str]:
    """How many times ``other`` the raw loop of ``name``'s client runs, and how the goal line names it.

    The raw loop does the same per-record work with the same client and no framework, so a ratio
    it does not reach itself is beyond what this machine lets any framework on that client show
    (two cores shared with the broker and the load generator). Only for another framework:
    against a raw loop or another pit-streams mode the ratio is the goal itself."""
    base = contenders.get(name, {}).get("baseline")
    if not base or other == base or other.startswith("pit-streams"):
        return None, ""
    raw = contenders.get(base, {}).get("records_per_s_median")
    theirs = contenders.get(other, {}).get("records_per_s_median")
    if not raw or not theirs:
        return None, ""
    ratio = round(raw / theirs, 3)
    return ratio, f" (the raw loop {base} itself: {ratio:g}x)"


def _floor(contenders: dict[str, dict[str, Any]], name: str, rate: float) -> tuple[float | None, str]:
    """The p99 of ``name``'s raw loop (same client) at the same offered rate, and how the goal line
    names it: what the machine itself allows, since broker, load generator and worker share it."""
    base = contenders.get(name, {}).get("baseline")
    lat = contenders.get(base or "", {}).get("latency") or {}
    if base == name or not lat.get("ok") or lat.get("offered_rate") != rate or lat.get("p99_ms") is None:
        return None, ""
    p99 = round(lat["p99_ms"], 2)
    return p99, f" (the raw loop {base} at the same rate: p99 {p99:g} ms)"


def restart_points(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Every restart measurement of a result: ``restarts`` (one per id count), or the older single ``restart``."""
    points = result.get("restarts")
    if points:
        return list(points)
    return [result["restart"]] if result.get("restart") else []


def restart_goals(points: list[dict[str, Any]] | dict[str, Any] | None) -> list[dict[str, Any]]:
    """Restart-to-ready (``bench/restart.py``) of each id count against its goal (same disk, and a
    partition move), and the worker's RSS holding the largest count (goal for 10 M ids)."""
    if not points:
        return []
    if isinstance(points, dict):
        points = [points]
    from bench.restart import short_count

    out: list[dict[str, Any]] = []
    for restart in points:
        n, goal = short_count(int(restart.get("ids", 0))), restart.get("goal_s", 10.0)
        for phase, what in (("same_disk", "restart-to-ready (same disk"), ("fresh_disk", "partition move (fresh disk"),
                            ("standby_move", "partition move (to a warm --standby worker")):
            p = restart.get(phase) or {}
            value = p.get("ready_s") if p.get("ok") else None
            why = p.get("status") or restart.get("error") or "not run"
            out.append(
                {
                    "goal": f"{what}, {n} dedupe ids) < {goal:g} s",
                    "value": value,
                    "met": None if value is None else value < goal,
                    "why_unknown": None if value is not None else why,
                }
            )
    big = max(points, key=lambda r: int(r.get("ids", 0)))
    same = big.get("same_disk") or {}
    rss = same.get("peak_rss_mb") if same.get("ok") else None
    fresh_rss = (big.get("fresh_disk") or {}).get("peak_rss_mb")
    out.append(
        {
            "goal": f"worker RSS with {short_count(int(big.get('ids', 0)))} dedupe ids in its store (same-disk"
            f" restart, peak) < {RESTART_RSS_GOAL_MB:g} MB"
            + (f"; fresh-disk restore peak {fresh_rss:.0f} MB" if fresh_rss else "")
            + ("" if int(big.get("ids", 0)) >= RESTART_GOAL_IDS else f" (goal is for {short_count(RESTART_GOAL_IDS)})"),
            "value": round(rss, 1) if rss is not None else None,
            "met": None if rss is None else rss < RESTART_RSS_GOAL_MB,
            "why_unknown": None if rss is not None else (same.get("status") or big.get("error") or "not run"),
        }
    )
    return out


def _restart_lines(r: dict[str, Any]) -> list[str]:
    cl = r.get("changelog") or {}
    lines = [
        f"restart-to-ready ({r.get('transport')} transport, {r.get('ids', 0):,} dedupe ids in the changelog"
        + (f": {cl['records']:,} records, {cl['ids_per_record']} ids each, written directly" if cl else "")
        + "):"
    ]
    if r.get("error"):
        lines.append(f"  error: {r['error']}")
    for phase, what in (("fresh_disk", "fresh disk (partition move)"), ("same_disk", "same disk restart"),
                        ("standby_move", "move to a warm standby")):
        p = r.get(phase)
        if not p:
            continue
        ready = f"{p['ready_s']:.2f} s" if p.get("ready_s") is not None else "not ready"
        lines.append(
            f"  {what:<28} ready {ready} ({p.get('status')}): {_fmt(p.get('changelog_records_restored'))} changelog"
            f" records read, /readyz 200 at {p.get('readyz_s')} s after spawn,"
            f" peak RSS {p.get('peak_rss_mb', 0):.0f} MB, re-sent restored ids answered"
            f" {p.get('duplicate_outputs')}/{p.get('duplicates_sent')} (0 expected)"
        )
    lines.append(f"  {r.get('summary', '')}")
    return lines


def _missing(contenders: dict[str, dict[str, Any]], names: tuple[str, ...]) -> str:
    why = []
    for n in names:
        c = contenders.get(n)
        if c is None:
            why.append(f"{n} not selected")
        elif not c.get("enabled"):
            why.append(f"{n} disabled ({c.get('note')})")
        elif not c.get("records_per_s_median"):
            why.append(f"{n} has no successful run")
    return "; ".join(why) or "not measured"


def _fmt(v: float | None, spec: str = ",.0f", none: str = "-") -> str:
    return format(v, spec) if v is not None else none


def _exactly_once_cost(cs: dict[str, dict[str, Any]]) -> list[str]:
    """pit-streams exactly-once (``--guarantee exactly_once``) next to its at-least-once run:
    throughput ratio and p99 of both (measured, no goal yet)."""
    out = []
    for name, c in cs.items():
        base = cs.get(name.removesuffix("-eos")) if name.endswith("-eos") else None
        if base is None or not c.get("enabled") or not base.get("enabled"):
            continue
        a, b = c.get("records_per_s_median"), base.get("records_per_s_median")
        p99, p99_base = (c.get("latency") or {}).get("p99_ms"), (base.get("latency") or {}).get("p99_ms")
        ratio = f"{a / b:.2f}x" if a and b else "-"
        out.append(f"exactly-once cost: {name} {_fmt(a)} records/s = {ratio} of {name.removesuffix('-eos')}"
                   f" ({_fmt(b)}); p99 {_fmt(p99, '.1f')} ms vs {_fmt(p99_base, '.1f')} ms")  # fmt: skip
    return out


def table(result: dict[str, Any]) -> str:
    cs: dict[str, dict[str, Any]] = result["contenders"]
    head = (
        f"{'contender':<26} {'records/s':>10} {'runs':>26} {'vs raw':>7} {'CPU s/100k':>10} "
        f"{'RSS MB':>7} {'p50 ms':>7} {'p99 ms':>8} {'lat CPU':>7}  note"
    )
    lines = [head, "-" * len(head)]
    for name, c in cs.items():
        if not c.get("enabled"):
            lines.append(f"{name:<26} {'disabled':>10}  {c.get('note', '')}")
            continue
        runs = ",".join(f"{v / 1000:.1f}k" for v in c.get("records_per_s_runs", []))
        lat = c.get("latency") or {}
        note = [c["note"]] if c.get("note") else []
        if c.get("failed_runs"):
            note.append(f"{c['failed_runs']} run(s) failed")
        if lat and not lat.get("ok"):
            note.append(f"latency: {lat.get('status')}")
        elif lat and (lat.get("extra") or {}).get("saturated"):
            ex = lat["extra"]
            note.append(
                f"latency rose during the window (p50 {ex['p50_first_fifth_ms']:.0f} ms in the first fifth,"
                f" {ex['p50_last_fifth_ms']:.0f} ms in the last): queueing"
            )
        ratio = c.get("ratio_to_baseline")
        ratio_s = f"{ratio:.2f}x" if ratio is not None and name != c["baseline"] else ("1.00x" if ratio else "-")
        lines.append(
            f"{name:<26} {_fmt(c.get('records_per_s_median')):>10} {runs:>26} {ratio_s:>7} "
            f"{_fmt(c.get('cpu_s_per_100k_median'), '.2f'):>10} {_fmt(c.get('peak_rss_mb'), '.0f'):>7} "
            f"{_fmt(lat.get('p50_ms'), '.1f'):>7} {_fmt(lat.get('p99_ms'), '.1f'):>8} "
            f"{_fmt(lat.get('cpu_util'), '.2f'):>7}  {'; '.join(note)}"
        )
    eos_lines = _exactly_once_cost(cs)
    if eos_lines:
        lines += ["", *eos_lines]
    lines.append("")
    lines.append(
        "records/s: input records (duplicates included) / time from the first output seen to the last"
        " expected output; median of the runs. vs raw: ratio to raw-<same client>. CPU s/100k: CPU of the"
        " contender's process tree over that window. RSS: peak of the tree. p50/p99: end-to-end latency"
        " at the paced load; lat CPU: CPU seconds per second at that load."
    )
    m = result["meta"]["machine"]
    lines.append(
        f"machine: {m['cpus']} CPUs; load average at start {m.get('loadavg_start', '?').split(' ')[0]},"
        f" at end {m.get('loadavg_end', '?').split(' ')[0]} (anything else running on the machine skews every"
        " number; runs are interleaved so drift spreads over all contenders)"
    )
    dd = result.get("dedupe_cost") or []
    if dd:
        lines.append("")
        lines.append("dedupe store (rocksdict, 36-char UUID keys, raw mode, WriteBatch of 10k):")
        for d in dd:
            if "error" in d:
                lines.append(f"  {d.get('keys'):>11,} keys: {d['error']}")
                continue
            lines.append(
                f"  {d['keys']:>11,} keys: insert {d['insert_s']:.1f}s ({d['inserts_per_s']:,}/s), peak RSS"
                f" {d['peak_rss_mb']:.0f} MB, disk {d['disk_after_flush_mb']:.0f} MB after flush /"
                f" {d['disk_after_compact_mb']:.0f} MB compacted ({d['sst_bytes_per_key']:.0f} B/key),"
                f" lookup hit {d['lookup_hit_us']:.1f} us, miss {d['lookup_miss_us']:.1f} us"
            )
    pc = result.get("placement_cost")
    if pc:
        lines.append("")
        lines.append(
            f"partition-placement check (murmur2 of the record key vs its partition): unwrap {pc['unwrap_ns']:,} ns"
            f" -> {pc['unwrap_with_placement_ns']:,} ns per record ({pc['overhead_pct']:+.1f} %), a first-seen key's"
            f" murmur2 {pc['murmur2_uncached_ns']:,} ns"
        )
    tb = result.get("txn_backoff")
    if tb:
        lines.append("")
        lines.append(
            f"back-to-back transactions ({tb['transactions']}, {tb['records_per_transaction']} records + offsets each):"
            f" librdkafka's default retry back-off p50 {tb['default']['p50_ms']} / p99 {tb['default']['p99_ms']} ms,"
            f" the worker's ({tb['worker_retry_backoff_ms']} ms) p50 {tb['worker']['p50_ms']} / p99"
            f" {tb['worker']['p99_ms']} ms ({tb['p50_ratio']}x at p50)"
        )
    for point in restart_points(result):
        lines.append("")
        lines.extend(_restart_lines(point))
    lines.append("")
    lines.append("goals:")
    for g in result.get("goals", []):
        state = "reported" if g.get("reported") and g["value"] is not None else {
            True: "goal met", False: "goal NOT met", None: "not measured"}[g["met"]]
        val = f" (value {g['value']})" if g["value"] is not None else f" ({g['why_unknown']})"
        lines.append(f"  {state:<13} {g['goal']}{val}")
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, sort_keys=False, default=str) + "\n")


def write_png(result: dict[str, Any], path: Path) -> str | None:
    """Bar charts: median records/s (with min-max of runs), CPU s/100k, p99 latency."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        return f"no chart: {e}"
    cs = {n: c for n, c in result["contenders"].items() if c.get("enabled") and c.get("records_per_s_median")}
    if not cs:
        return "no chart: no contender finished a run"
    names = list(cs)
    colors = ["#4c72b0" if n.startswith("raw-") else "#dd8452" if n.startswith("pit-") else "#8c8c8c" for n in names]
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.5))
    med = [cs[n]["records_per_s_median"] for n in names]
    lo = [max(0.0, m - min(cs[n]["records_per_s_runs"])) for n, m in zip(names, med, strict=True)]
    hi = [max(0.0, max(cs[n]["records_per_s_runs"]) - m) for n, m in zip(names, med, strict=True)]
    ax = axes[0]
    ax.bar(names, med, color=colors, yerr=[lo, hi], capsize=4)
    ax.set_title("throughput (records/s, median; bars: min-max)")
    for i, n in enumerate(names):
        r = cs[n].get("ratio_to_baseline")
        if r and not n.startswith("raw-"):
            ax.annotate(f"{r:.2f}x {cs[n]['baseline']}", (i, med[i]), ha="center", va="bottom", fontsize=8,
                        xytext=(0, 6), textcoords="offset points")  # fmt: skip
    ax = axes[1]
    ax.bar(names, [cs[n].get("cpu_s_per_100k_median") or 0 for n in names], color=colors)
    ax.set_title("CPU seconds per 100k records (lower is better)")
    ax = axes[2]
    lat = [(cs[n].get("latency") or {}).get("p99_ms") for n in names]
    ax.bar(names, [v or 0 for v in lat], color=colors)
    ax.axhline(LATENCY_GOAL_MS, color="red", linestyle="--", linewidth=1, label=f"goal {LATENCY_GOAL_MS:g} ms")
    rate = next((c["latency"]["offered_rate"] for c in cs.values() if c.get("latency")), 5000)
    ax.set_title(f"p99 end-to-end latency at {rate:g} records/s (ms, log)")
    ax.set_yscale("log")
    ax.set_ylim(bottom=1, top=max([v for v in lat if v] + [LATENCY_GOAL_MS]) * 3)
    ax.legend(fontsize=8)
    for i, v in enumerate(lat):
        ax.annotate("n/a" if v is None else f"{v:.0f}", (i, v or 1), ha="center", va="bottom", fontsize=8)
    for ax in axes:
        ax.tick_params(axis="x", rotation=35, labelsize=8)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    meta = result["meta"]
    fig.suptitle(
        f"pit-streams bench {meta['run_id']}: {meta['input']['records']:,} input records"
        f" ({meta['input']['distinct']:,} distinct), {meta['input']['partitions']} partitions,"
        f" {meta['machine']['cpus']} CPUs, {meta['runs']} runs",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
