"""``pit-streams worker`` as a process: a SIGKILL between outputs and commit re-emits only
identical ids; SIGTERM finishes and commits the batch in flight; start-up errors are one line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
from itapp import make_app
from kafka_support import REPO_ROOT, consume_all
from support import Scenario, committed, derived, fill, produce, read_all

from devkit.workers import WorkerProcess
from pit_streams.contract import Key

pytestmark = pytest.mark.kafka

APP_MODULE = "tests.integration.worker_app"


def start_worker(sc: Scenario, transport: str, data_dir: Path, *args: str, work_s: float = 0.0) -> WorkerProcess:
    """One ``pit-streams worker`` subprocess running the scenario's app (``devkit.workers``)."""
    catalog = data_dir.parent / f"{sc.name}-topics.yaml"
    catalog.write_text(sc.catalog_yaml())
    env = {"PIT_IT_APP": sc.name, "PIT_IT_SOURCE": sc.source, "PIT_IT_OUTPUT": sc.output, "PIT_IT_WORK_S": str(work_s)}
    worker = WorkerProcess(sc.name, APP_MODULE, sc.bootstrap, data_dir,
                           data_dir.parent / f"{sc.name}-{time.monotonic_ns()}.log", health_port=-1, env=env,
                           args=["--transport", transport, "--catalog", str(catalog), *args])  # fmt: skip
    worker.start()
    return worker


def _until(condition: Callable[[], bool], timeout: float, what: str, worker: WorkerProcess) -> None:
    """Check ``condition`` (a broker query) until it holds; fail with the worker's output."""
    deadline = time.monotonic() + timeout
    while not condition():
        if not worker.alive():
            raise AssertionError(f"worker exited ({worker.returncode}) before {what}:\n{worker.output()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout}s: {what}; output:\n{worker.output()}")
        time.sleep(0.2)


def test_sigkill_before_commit_reemits_only_identical_event_ids(
    transport: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    sc = Scenario(kafka_bootstrap)
    sc.create()
    app = make_app(sc.name, sc.source, sc.output)
    inputs = [fill(key=Key("demo", "alpha", f"{i % 25:04d}")) for i in range(3000)]
    produce(kafka_bootstrap, sc.source, inputs)
    data_dir = tmp_path / "data"

    # One big batch with real work per record: its first outputs are on the broker about a
    # second before its commit, and the kill lands in between.
    first = start_worker(sc, transport, data_dir, "--batch-size", "5000", work_s=0.0003)
    try:
        assert consume_all(kafka_bootstrap, sc.output, expected_count=1, timeout=60), first.output()
        first.kill()
    finally:
        first.kill()
    killed_before_commit = committed(kafka_bootstrap, sc.name, sc.source, 1)[0] is None

    second = start_worker(sc, transport, data_dir, "--batch-size", "5000")
    try:
        _until(
            lambda: committed(kafka_bootstrap, sc.name, sc.source, 1)[0] == len(inputs),
            90,
            "every input committed after the restart",
            second,
        )
        assert second.terminate(30).returncode == 0, second.output()
    finally:
        second.kill()

    outputs = read_all(kafka_bootstrap, sc.output)
    by_id: dict[str, list[tuple[bytes | None, bytes | None]]] = defaultdict(list)
    for o in outputs:
        by_id[o.envelope.event_id].append((o.key, o.value))
    assert set(by_id) == {derived(app, r.event_id) for r in inputs}  # exactly one id per input, no other
    for event_id, copies in by_id.items():
        assert all(c == copies[0] for c in copies), f"re-emitted {event_id} differs from the first emission"
    if killed_before_commit:
        # The crash path was taken: the killed batch ran again and re-emitted (at least) the output
        # that triggered the kill. (Only a kill in the millisecond between the changelog's ack and
        # the commit would leave no duplicate: the restored dedupe marks would skip the batch.)
        assert len(outputs) > len(by_id), "the killed batch was not re-run"


def test_sigterm_finishes_the_batch_in_flight_and_commits_it(
    transport: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    sc = Scenario(kafka_bootstrap)
    sc.create()
    app = make_app(sc.name, sc.source, sc.output)
    inputs = [fill(key=Key("demo", "alpha", f"{i % 10:04d}")) for i in range(1500)]
    produce(kafka_bootstrap, sc.source, inputs)
    worker = start_worker(sc, transport, tmp_path / "data", "--batch-size", "100", work_s=0.001)
    try:
        _until(lambda: bool(committed(kafka_bootstrap, sc.name, sc.source, 1)[0]), 60, "a first commit", worker)
        assert worker.terminate(30).returncode == 0, worker.output()
    finally:
        worker.kill()
    assert "worker stopped cleanly" in worker.output()
    offset = committed(kafka_bootstrap, sc.name, sc.source, 1)[0]
    assert offset is not None and 0 < offset <= len(inputs)
    # Everything processed was committed and nothing beyond: the outputs cover exactly [0, offset).
    ids = [o.envelope.event_id for o in read_all(kafka_bootstrap, sc.output)]
    assert ids == [derived(app, r.event_id) for r in inputs[:offset]]


def _run_cli(*args: str, timeout: float, env: dict[str, str] | None = None) -> tuple[int, str, float]:
    t0 = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "pit_streams.cli", "worker", "--health-port", "-1", *args],
        cwd=REPO_ROOT, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=timeout, check=False,
    )  # fmt: skip
    return res.returncode, res.stderr, time.monotonic() - t0


def test_bad_app_module_is_one_line_and_exit_2(transport: str, kafka_bootstrap: str) -> None:
    rc, stderr, _ = _run_cli(
        "-A", "tests.integration.no_such_module", "--broker", kafka_bootstrap, "--transport", transport, timeout=60
    )
    assert rc == 2
    [line] = stderr.strip().splitlines()
    assert line.startswith("pit-streams: cannot import app module 'tests.integration.no_such_module'")


def test_missing_broker_is_one_line_naming_the_fix(transport: str, tmp_path: Path) -> None:
    sc = Scenario("127.0.0.1:1")
    catalog = tmp_path / "topics.yaml"
    catalog.write_text(sc.catalog_yaml())
    rc, stderr, elapsed = _run_cli(
        "-A", APP_MODULE, "--broker", "127.0.0.1:1", "--transport", transport, "--catalog", str(catalog),
        "--data-dir", str(tmp_path / "data"), timeout=60,
        env={"PIT_IT_APP": sc.name, "PIT_IT_SOURCE": sc.source, "PIT_IT_OUTPUT": sc.output},
    )  # fmt: skip
    assert rc == 2, stderr
    [line] = stderr.strip().splitlines()
    assert line == (
        "pit-streams: no Kafka broker answers at 127.0.0.1:1: start one ('make kafka-up')"
        " or pass --broker / PIT_KAFKA_BOOTSTRAP"
    )
    assert elapsed < 15
