"""Run one contender once: throughput over the shared input, or latency at a paced load."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench import topics
from bench.input import InputSummary, all_keys, fill_envelope, partition_of, producer_config
from bench.measure import OutputObserver, ProcTreeSampler, percentile
from bench.registry import REPO, Contender, RunSpec
from bench.topics import TopicPlan


@dataclass
class RunResult:
    contender: str
    run: int
    ok: bool
    status: str  # "ok" | "timeout" | "exited rc=N" | "wrong outputs"
    records_per_s: float | None = None
    records_per_s_incl_startup: float | None = None
    window_s: float | None = None
    startup_s: float | None = None
    outputs_distinct: int = 0
    outputs_total: int = 0
    outputs_unexpected: int = 0
    peak_rss_mb: float = 0.0
    cpu_s_window: float | None = None
    cpu_s_per_100k: float | None = None
    cpu_s_total: float | None = None
    log: str = ""


@dataclass
class LatencyResult:
    contender: str
    ok: bool
    status: str
    offered_rate: float = 0.0
    produced: int = 0
    samples: int = 0
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    missing: int = 0
    cpu_util: float | None = None  # CPU seconds per wall second during the paced phase
    peak_rss_mb: float = 0.0
    log: str = ""
    extra: dict[str, object] = field(default_factory=dict)


def _launch(c: Contender, spec: RunSpec, log_path: Path) -> subprocess.Popen[bytes]:
    log = open(log_path, "wb")  # noqa: SIM115 - handed to the child, closed by the caller's exit
    try:
        return subprocess.Popen(
            c.argv(spec),
            cwd=REPO,
            env=c.process_env(spec),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # own process group: stopped as a whole, measured as a tree
        )
    finally:
        log.close()


def stop_process(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """SIGTERM the contender's process group, then SIGKILL it if it does not exit in time."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _tail(path: Path, n: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def _prepare(
    c: Contender, *, bootstrap: str, run_id: str, tag: str, input_topic: str | None, partitions: int, batch: int
) -> tuple[TopicPlan, RunSpec, str]:
    """Create the run's topics and state dir; the contender's RunSpec."""
    tp = topics.plan(run_id, tag, platform=c.platform_topics, input_topic=input_topic, partitions=partitions)
    tp.ensure(bootstrap)
    data_dir = tempfile.mkdtemp(prefix=f"pit-bench-{tag}-")
    catalog = tp.write_catalog(Path(data_dir) / "topics.yaml")
    spec = RunSpec(
        broker=bootstrap,
        input_topic=tp.input,
        output_topic=tp.output,
        group=tp.group,
        data_dir=str(Path(data_dir) / "state"),
        batch=batch,
        name=f"bench-{c.name}/0.1",
        catalog=str(catalog) if catalog else None,
    )
    return tp, spec, data_dir


def run_throughput(
    c: Contender,
    *,
    bootstrap: str,
    summary: InputSummary,
    run_id: str,
    run: int,
    batch: int,
    timeout: float,
    log_dir: Path,
    created: list[str],
) -> RunResult:
    tag = f"{c.name}.r{run}"
    shared_input = summary.copies[0] if c.platform_topics else summary.topic
    tp, spec, data_dir = _prepare(
        c, bootstrap=bootstrap, run_id=run_id, tag=tag, input_topic=shared_input,
        partitions=summary.partitions, batch=batch,
    )  # fmt: skip
    created.extend(tp.names())
    out_topic = tp.output
    log_path = log_dir / f"{tag}.log"
    observer = OutputObserver(bootstrap, out_topic, expected=summary.input_ids)
    observer.start()
    t_launch = time.time()
    proc = _launch(c, spec, log_path)
    sampler = ProcTreeSampler(proc.pid)
    sampler.start()
    cpu_first: float | None = None
    status = "ok"
    deadline = time.monotonic() + timeout
    try:
        while not observer.done.wait(0.05):
            if cpu_first is None and observer.obs.first_output is not None:
                cpu_first = sampler.cpu_now()
            if proc.poll() is not None:
                status = f"exited rc={proc.returncode}"
                break
            if time.monotonic() > deadline:
                status = "timeout"
                break
        cpu_end = sampler.cpu_now()
        sampler.sample()
    finally:
        sampler.stop()
        stop_process(proc)
        observer.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    obs = observer.obs
    res = RunResult(
        contender=c.name,
        run=run,
        ok=False,
        status=status,
        outputs_distinct=len(obs.distinct),
        outputs_total=obs.records,
        outputs_unexpected=obs.unexpected,
        peak_rss_mb=sampler.peak_rss / 2**20,
        cpu_s_total=cpu_end,
        log=str(log_path),
    )
    if obs.first_output is not None:
        res.startup_s = obs.first_output - t_launch
        end = obs.complete_at or obs.latest_output or obs.first_output
        window = end - obs.first_output
        done_fraction = len(obs.distinct) / max(1, summary.distinct)
        records = summary.records * done_fraction
        if window > 0:
            res.window_s = window
            res.records_per_s = records / window
            res.records_per_s_incl_startup = records / (end - t_launch)
            if cpu_first is not None:
                res.cpu_s_window = cpu_end - cpu_first
                res.cpu_s_per_100k = res.cpu_s_window / records * 100_000
    if status == "ok" and (
        obs.unexpected or len(obs.distinct) != summary.distinct or len(obs.output_ids) != len(obs.distinct)
    ):
        res.status = (
            f"wrong outputs: {len(obs.distinct)} inputs answered of {summary.distinct},"
            f" {obs.unexpected} unexpected, {len(obs.output_ids)} distinct output ids"
        )
    res.ok = res.status == "ok"
    if not res.ok:
        print(f"[bench] {tag}: {res.status}; log tail:\n{_tail(log_path)}", file=sys.stderr, flush=True)
    return res


def run_latency(
    c: Contender,
    *,
    bootstrap: str,
    run_id: str,
    batch: int,
    rate: float,
    warmup: float,
    seconds: float,
    partitions: int,
    log_dir: Path,
    created: list[str],
) -> LatencyResult:
    """Start ``c`` on an empty topic, wait until it answers, then offer ``rate`` records/s."""
    tag = f"{c.name}.latency"
    tp, spec, data_dir = _prepare(
        c, bootstrap=bootstrap, run_id=run_id, tag=tag, input_topic=None, partitions=partitions, batch=batch
    )
    created.extend(tp.names())
    in_topic, out_topic = tp.input, tp.output
    log_path = log_dir / f"{tag}.log"
    observer = OutputObserver(bootstrap, out_topic, expected=None, expected_count=0, parse_all=True)
    observer.start()
    proc = _launch(c, spec, log_path)
    sampler = ProcTreeSampler(proc.pid)
    sampler.start()
    res = LatencyResult(contender=c.name, ok=False, status="ok", offered_rate=rate, log=str(log_path))
    pacer: subprocess.Popen[str] | None = None
    try:
        from confluent_kafka import Producer

        # Prime: one record at a time until the contender has joined its group and answers.
        rng = random.Random(3)
        keys = all_keys()
        primer = Producer(producer_config(bootstrap, **{"linger.ms": 0}))
        deadline = time.monotonic() + 120
        primed = 0
        while observer.obs.first_output is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                res.status = "exited before answering" if proc.poll() is not None else "no answer"
                return res
            ki = rng.randrange(len(keys))
            _, value = fill_envelope(rng, keys[ki], time.time_ns(), in_topic)
            key = str(keys[ki]).encode()
            primer.produce(in_topic, value=value, key=key, partition=partition_of(key, partitions))
            primer.flush(10)
            primed += 1
            time.sleep(0.5)
        time.sleep(1.0)  # let the primer's stragglers drain
        start_ns = time.time_ns()
        observer.latency_from_ns = start_ns + int(warmup * 1e9)
        observer.latency_until_ns = start_ns + int((warmup + seconds) * 1e9)
        cpu0, t0 = sampler.cpu_now(), time.monotonic()
        pacer = subprocess.Popen(
            [sys.executable, "-m", "bench.pacer", "--broker", bootstrap, "--topic", in_topic,
             "--rate", str(rate), "--seconds", str(warmup + seconds), "--partitions", str(partitions)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        out, _ = pacer.communicate(timeout=warmup + seconds + 60)
        cpu1, t1 = sampler.cpu_now(), time.monotonic()
        info = json.loads(out.strip().splitlines()[-1])
        res.produced = int(info["produced"])
        res.extra = {"pacer": info, "primer_records": primed}
        expected_total = primed + res.produced
        drain_deadline = time.monotonic() + 10
        while len(observer.obs.distinct) < expected_total and time.monotonic() < drain_deadline:
            time.sleep(0.05)
        res.missing = max(0, expected_total - len(observer.obs.distinct))
        res.cpu_util = (cpu1 - cpu0) / (t1 - t0)
        if proc.poll() is not None:
            res.status = f"exited rc={proc.returncode}"
    finally:
        if pacer is not None and pacer.poll() is None:
            pacer.kill()
        sampler.stop()
        stop_process(proc)
        observer.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    lat = observer.obs.latencies_ms
    res.samples = len(lat)
    res.p50_ms = percentile(lat, 50)
    res.p90_ms = percentile(lat, 90)
    res.p99_ms = percentile(lat, 99)
    res.max_ms = max(lat) if lat else None
    prod = observer.obs.produced_ms
    # Output record CreateTime - input ts: the part of the latency spent before the contender
    # produced its output. Meaningless for contenders that copy the input record's timestamp to
    # the output (Quix does): then it is ~0.
    res.extra["output_record_ts_minus_input_ts_ms"] = {"p50": percentile(prod, 50), "p99": percentile(prod, 99)}
    # Latency early vs late in the measured window: a contender that cannot keep up with the
    # offered load shows a growing queue, not a stable distribution.
    fifth = len(lat) // 5
    if fifth:
        first, last = percentile(lat[:fifth], 50) or 0.0, percentile(lat[-fifth:], 50) or 0.0
        res.extra["p50_first_fifth_ms"], res.extra["p50_last_fifth_ms"] = first, last
        if last > 100.0 and last > 3 * first:
            res.extra["saturated"] = True
    res.peak_rss_mb = sampler.peak_rss / 2**20
    if res.status == "ok" and (res.missing or not lat):
        res.status = f"{res.missing} outputs missing" if res.missing else "no latency samples"
    res.ok = res.status == "ok"
    if not res.ok:
        print(f"[bench] {tag}: {res.status}; log tail:\n{_tail(log_path)}", file=sys.stderr, flush=True)
    return res


def as_dict(obj: RunResult | LatencyResult) -> dict[str, object]:
    return asdict(obj)
