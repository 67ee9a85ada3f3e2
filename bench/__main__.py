"""``python -m bench``: run every contender on a private local broker and report.

    python -m bench                      full run (starts its own broker via infra/kafka/kafka.sh)
    python -m bench --smoke              tiny input, 1 run, raw loops (+ pit-streams if present)
    python -m bench --broker H:P         use a running loopback broker instead of starting one
    python -m bench --contenders raw-confluent,faust --runs 5 --fills 500000
    python -m bench --restart-ids 0      skip the restart-to-ready measurement (bench/restart.py)

Writes ``bench/results/latest.json`` and ``latest.png`` (``--smoke``: a temporary directory,
unless ``--out-dir`` is given) and prints a table and the goals (met / not met; never asserted).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import placement_cost, registry, report, restart, topics, txn_backoff
from bench.input import produce_input
from bench.registry import REPO, Contender
from bench.runner import as_dict, run_latency, run_throughput
from devkit.broker import KAFKA_SH, broker
from devkit.topics import create_topics, delete_topics

ALL = ("raw-confluent", "raw-aiokafka", "pit-streams-confluent", "pit-streams-confluent-eos", "pit-streams-aiokafka",
       "quix", "quix-no-changelog", "quix-eos", "faust")
SMOKE = ("raw-confluent", "raw-aiokafka", "pit-streams-confluent", "pit-streams-confluent-eos", "pit-streams-aiokafka")
RESULTS = REPO / "bench" / "results"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--smoke", action="store_true", help="tiny, fast run (CI smoke test)")
    p.add_argument("--broker", help="use this running loopback broker (host:port) instead of a private one")
    p.add_argument("--contenders", help=f"comma-separated subset of {','.join(ALL)}")
    p.add_argument("--fills", type=int, help="distinct input fills (default 200000; smoke 2000)")
    p.add_argument("--dup-ratio", type=float, default=0.10, help="duplicate redeliveries per distinct fill")
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--runs", type=int, help="throughput runs per contender (default 3; smoke 1)")
    p.add_argument("--batch", type=int, default=2000, help="max records per poll batch, every contender")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds one throughput run may take")
    p.add_argument("--latency-rate", type=float, default=5000.0, help="offered load of the latency phase")
    p.add_argument("--latency-seconds", type=float, help="measured seconds (default 10; smoke 2)")
    p.add_argument("--latency-warmup", type=float, help="seconds of load before measuring (default 3; smoke 1)")
    p.add_argument("--latency-contenders", help="comma-separated (default: every selected one; smoke: raw-confluent)")
    p.add_argument("--no-latency", action="store_true")
    p.add_argument("--dedupe-sizes", help="comma-separated key counts (default 1000000,10000000; smoke 10000)")
    p.add_argument(
        "--restart-ids",
        help="comma-separated dedupe id counts of the restart-to-ready runs (default 1000000,10000000;"
        " smoke 20000; 0 skips them)",
    )
    p.add_argument("--quix-python", help="interpreter with quixstreams installed (skips building the venv)")
    p.add_argument("--pit-app", default=registry.PIT_APP_MODULE, help="app module for the pit-streams worker")
    p.add_argument("--out-dir", type=Path, help="where latest.json / latest.png go")
    p.add_argument("--keep-topics", action="store_true", help="with --broker: do not delete the run's topics")
    p.add_argument("--report-only", type=Path, metavar="JSON", help="re-print table + chart of a result")
    a = p.parse_args(argv)
    if a.fills is None:
        a.fills = 2000 if a.smoke else 200_000
    if a.runs is None:
        a.runs = 1 if a.smoke else 3
    if a.latency_seconds is None:
        a.latency_seconds = 2.0 if a.smoke else 10.0
    if a.latency_warmup is None:
        a.latency_warmup = 1.0 if a.smoke else 3.0
    if a.dedupe_sizes is None:
        a.dedupe_sizes = "10000" if a.smoke else "1000000,10000000"
    if a.restart_ids is None:
        a.restart_ids = "20000" if a.smoke else "1000000,10000000"
    try:
        a.restart_points = [n for n in (int(v) for v in str(a.restart_ids).split(",") if v.strip()) if n > 0]
    except ValueError:
        p.error(f"--restart-ids {a.restart_ids!r}: give comma-separated counts, e.g. 1000000,10000000 (0 skips)")
    if a.out_dir is None:
        a.out_dir = Path(tempfile.gettempdir()) / "pit-bench-smoke" if a.smoke else RESULTS
    return a


def select(args: argparse.Namespace) -> list[Contender]:
    names = [n.strip() for n in args.contenders.split(",")] if args.contenders else list(SMOKE if args.smoke else ALL)
    unknown = sorted(set(names) - set(ALL))
    if unknown:
        raise SystemExit(f"unknown contender(s) {unknown}: choose from {', '.join(ALL)}")
    out: list[Contender] = []
    for n in names:
        if n == "raw-confluent":
            out.append(registry.raw_confluent())
        elif n == "raw-aiokafka":
            out.append(registry.raw_aiokafka())
        elif n == "faust":
            out.append(registry.faust())
        elif n in registry.QUIX_VARIANTS:
            py = args.quix_python or registry.build_quix_venv(log)
            c = registry.quix(py, n)
            if py is None:
                c.enabled, c.note = False, "Quix virtualenv could not be built (see the log above)"
            out.append(c)
        elif n.endswith("-eos"):
            out.append(registry.pit_streams(n.removeprefix("pit-streams-").removesuffix("-eos"), args.pit_app,
                                            guarantee="exactly_once"))  # fmt: skip
        else:
            out.append(registry.pit_streams(n.removeprefix("pit-streams-"), args.pit_app))
    return out


def machine() -> dict[str, Any]:
    mem = ""
    with contextlib.suppress(OSError, StopIteration):
        lines = Path("/proc/meminfo").read_text().splitlines()
        mem = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("MemTotal"))
    return {
        "cpus": os.cpu_count(),
        "mem_total": mem,
        "platform": platform.platform(),
        "harness_python": sys.executable,
        "harness_python_version": platform.python_version(),
        "loadavg_start": _loadavg(),
    }


def _loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return ""


def kafka_version() -> str:
    try:
        res = subprocess.run(["bash", str(KAFKA_SH), "version"], capture_output=True, text=True, timeout=30)
        return res.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def dedupe_cost(sizes: list[int], log_dir: Path) -> list[dict[str, Any]]:
    import json

    out: list[dict[str, Any]] = []
    for n in sizes:
        d = tempfile.mkdtemp(prefix=f"pit-bench-dedupe-{n}-")
        log(f"dedupe store cost: {n:,} keys ...")
        try:
            res = subprocess.run(
                [sys.executable, "-m", "bench.dedupe_cost", "--keys", str(n), "--dir", d],
                cwd=REPO, capture_output=True, text=True, timeout=1800,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )  # fmt: skip
            if res.returncode != 0:
                out.append({"keys": n, "error": f"exit {res.returncode}: {res.stderr[-500:]}"})
            else:
                out.append(json.loads(res.stdout.strip().splitlines()[-1]))
        except subprocess.TimeoutExpired:
            out.append({"keys": n, "error": "timed out after 1800s"})
        finally:
            subprocess.run(["rm", "-rf", d], check=False)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    run_id = "r" + time.strftime("%Y%m%d%H%M%S")
    log_dir = Path(tempfile.mkdtemp(prefix=f"pit-bench-{run_id}-logs-"))
    contenders = select(args)
    for c in contenders:
        if c.enabled:
            c.versions = registry.probe_versions(c.python, c.packages)
        log(f"contender {c.name:<22} {'enabled' if c.enabled else 'DISABLED: ' + c.note}")
    active = [c for c in contenders if c.enabled]
    result: dict[str, Any] = {
        "meta": {
            "run_id": run_id,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "smoke": args.smoke,
            "runs": args.runs,
            "batch": args.batch,
            "machine": machine(),
            "logs": str(log_dir),
            "args": {k: str(v) for k, v in vars(args).items()},
        },
        "contenders": {},
    }
    for c in contenders:
        result["contenders"][c.name] = {
            "enabled": c.enabled,
            "note": c.note,
            "client": c.client,
            "baseline": c.baseline,
            "python": c.python,
            "versions": c.versions,
            "command": " ".join(c.argv(_example_spec(args))),
            "runs": [],
            "latency": None,
        }
    with broker(args.broker, label="bench") as bootstrap:
        result["meta"]["broker"] = {
            "bootstrap": bootstrap,
            "private": not args.broker,
            "kafka_version": kafka_version() if not args.broker else "unknown (existing broker)",
        }
        created: list[str] = []
        try:
            _measure(args, run_id, bootstrap, active, result, created, log_dir)
            log("back-to-back transactions: librdkafka's default retry back-off vs the worker's ...")
            result["txn_backoff"] = txn_backoff.measure(bootstrap, run_id, transactions=20 if args.smoke else 200)
            for i, ids in enumerate(args.restart_points):
                log(f"restart-to-ready: {ids:,} dedupe ids in a fresh group's changelog ...")
                result.setdefault("restarts", []).append(restart.measure(
                    bootstrap, ids=ids, run_id=f"{run_id}p{i}", partitions=args.partitions, batch=args.batch,
                    log_dir=log_dir, created=created, timeout=120.0 + ids / 100_000, standby=True,
                ))  # fmt: skip
                result["restart"] = result["restarts"][-1]
        finally:
            if args.broker and not args.keep_topics and created:
                log(f"deleting {len(created)} bench topics from {bootstrap}")
                delete_topics(bootstrap, created)
    sizes = [int(s) for s in args.dedupe_sizes.split(",") if s.strip()]
    result["dedupe_cost"] = dedupe_cost(sizes, log_dir) if sizes else []
    result["placement_cost"] = placement_cost.measure()
    cs = result["contenders"]
    for c in cs.values():
        report.summarize(c)
    report.add_ratios(cs)
    result["goals"] = report.goals(cs) + report.restart_goals(report.restart_points(result))
    result["meta"]["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    result["meta"]["machine"]["loadavg_end"] = _loadavg()
    return result


def _example_spec(args: argparse.Namespace) -> registry.RunSpec:
    return registry.RunSpec("BROKER", "INPUT", "OUTPUT", "GROUP", "DATA_DIR", args.batch, "NAME", "CATALOG")


def _measure(
    args: argparse.Namespace,
    run_id: str,
    bootstrap: str,
    active: list[Contender],
    result: dict[str, Any],
    created: list[str],
    log_dir: Path,
) -> None:
    inp = topics.bench_input_topic(run_id)
    copies = (topics.platform_input_topic(run_id),) if any(c.platform_topics for c in active) else ()
    create_topics(bootstrap, [inp, *copies], args.partitions)
    created.extend([inp, *copies])
    log(f"producing input: {args.fills:,} distinct fills + ~{args.dup_ratio:.0%} duplicates -> {inp}"
        + (f" (+ copy {copies[0]})" if copies else ""))  # fmt: skip
    summary = produce_input(
        bootstrap, inp, distinct=args.fills, dup_ratio=args.dup_ratio, partitions=args.partitions, copies=copies
    )
    log(f"input: {summary.records:,} records ({summary.distinct:,} distinct, {summary.duplicates:,} duplicates,"
        f" {summary.bytes_total / 2**20:.1f} MiB) in {summary.produce_seconds:.1f}s")  # fmt: skip
    result["meta"]["input"] = {
        "topic": summary.topic, "copies": list(summary.copies), "records": summary.records,
        "distinct": summary.distinct, "duplicates": summary.duplicates, "partitions": summary.partitions,
        "bytes": summary.bytes_total, "produce_seconds": round(summary.produce_seconds, 2),
    }  # fmt: skip
    cs = result["contenders"]
    # Interleave the runs (round r of every contender, then round r+1) so slow drift of a shared
    # machine spreads over all contenders instead of favouring whoever ran first.
    for r in range(1, args.runs + 1):
        for c in active:
            log(f"throughput {c.name} run {r}/{args.runs} ...")
            res = run_throughput(
                c, bootstrap=bootstrap, summary=summary, run_id=run_id, run=r, batch=args.batch,
                timeout=args.timeout, log_dir=log_dir, created=created,
            )  # fmt: skip
            cs[c.name]["runs"].append(as_dict(res))
            rate = f"{res.records_per_s:,.0f} records/s" if res.records_per_s else "no rate"
            log(f"  {c.name} run {r}: {res.status}, {rate}, {res.outputs_distinct:,}/{summary.distinct:,} answered,"
                f" CPU {res.cpu_s_per_100k or 0:.2f} s/100k, RSS {res.peak_rss_mb:.0f} MB")  # fmt: skip
    if args.no_latency:
        return
    if args.latency_contenders:
        wanted = {n.strip() for n in args.latency_contenders.split(",")}
    else:
        wanted = {"raw-confluent"} if args.smoke else {c.name for c in active}
    for c in active:
        if c.name not in wanted:
            continue
        log(f"latency {c.name} at {args.latency_rate:g} records/s,"
            f" {args.latency_warmup:g}s warm-up + {args.latency_seconds:g}s measured")  # fmt: skip
        lat = run_latency(
            c, bootstrap=bootstrap, run_id=run_id, batch=args.batch, rate=args.latency_rate,
            warmup=args.latency_warmup, seconds=args.latency_seconds, partitions=args.partitions,
            log_dir=log_dir, created=created,
        )  # fmt: skip
        cs[c.name]["latency"] = as_dict(lat)
        log(f"  {c.name}: {lat.status}, p50 {lat.p50_ms or 0:.1f} ms, p99 {lat.p99_ms or 0:.1f} ms,"
            f" {lat.samples:,} samples, CPU {lat.cpu_util or 0:.2f} s/s")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def _terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds through every finally: contenders, broker

    signal.signal(signal.SIGTERM, _terminate)
    if args.report_only:
        import json

        result = json.loads(args.report_only.read_text())
        problem = report.write_png(result, args.report_only.with_suffix(".png"))
        print(report.table(result))
        log(f"chart: {problem or args.report_only.with_suffix('.png')}")
        return 0
    t0 = time.monotonic()
    result = run(args)
    out_json = args.out_dir / "latest.json"
    report.write_json(result, out_json)
    problem = report.write_png(result, args.out_dir / "latest.png")
    print()
    print(report.table(result))
    print()
    log(f"wrote {out_json}" + (f" and {args.out_dir / 'latest.png'}" if problem is None else f" ({problem})"))
    log(f"contender logs in {result['meta']['logs']}; total {time.monotonic() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
