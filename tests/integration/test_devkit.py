"""The devkit's worker subprocesses and readers against the session broker: ready means
``/readyz`` answers 200, a worker that dies first is an error naming its output, and the
readers see exactly what the worker committed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from itapp import make_app
from support import Scenario, derived, fill, produce

from devkit.records import Cluster, read_topic
from devkit.workers import WorkerError, WorkerProcess

pytestmark = pytest.mark.kafka

APP_MODULE = "tests.integration.worker_app"


def _worker(sc: Scenario, transport: str, tmp_path: Path, app: str = APP_MODULE) -> WorkerProcess:
    catalog = tmp_path / "topics.yaml"
    catalog.write_text(sc.catalog_yaml())
    env = {"PIT_IT_APP": sc.name, "PIT_IT_SOURCE": sc.source, "PIT_IT_OUTPUT": sc.output}
    return WorkerProcess(sc.name, app, sc.bootstrap, tmp_path / "data", tmp_path / "worker.log", env=env,
                         args=["--transport", transport, "--catalog", str(catalog)])  # fmt: skip


def test_ready_on_readyz_then_outputs_and_offsets_read_back(
    transport: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    sc = Scenario(kafka_bootstrap)
    sc.create()
    w = _worker(sc, transport, tmp_path)
    cluster = Cluster(kafka_bootstrap)
    try:
        assert cluster.committed(sc.name, sc.source) == {0: None}
        w.start()
        assert not w.ready()  # a process just spawned has no group membership yet
        w.wait_ready(120)
        assert w.ready() and "pit_records_processed" in w.metrics()
        inputs = [fill(qty=i + 1) for i in range(5)]
        produce(kafka_bootstrap, sc.source, inputs)
        until = time.monotonic() + 60
        while cluster.committed(sc.name, sc.source)[0] != len(inputs):  # a broker query: no event to await
            assert w.alive() and time.monotonic() < until, w.output()
            time.sleep(0.2)
        assert cluster.lag(sc.name, sc.source) == 0
        ex = w.terminate(30)
        assert (ex.returncode, ex.cause) == (0, "SIGTERM by harness"), w.output()
        assert not w.unexpected_exits()
    finally:
        cluster.close()
        if w.alive():
            w.kill()
    app = make_app(sc.name, sc.source, sc.output)
    assert [r.envelope.event_id for r in read_topic(kafka_bootstrap, sc.output)] == [
        derived(app, r.event_id) for r in inputs
    ]


def test_a_worker_that_exits_before_ready_is_an_error_with_its_output(
    transport: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    sc = Scenario(kafka_bootstrap)
    w = _worker(sc, transport, tmp_path, app="tests.integration.no_such_module")
    w.start()
    with pytest.raises(WorkerError, match="exited with 2 before /readyz said ready") as info:
        w.wait_ready(60)
    assert "pit-streams: cannot import app module" in str(info.value)  # its output, not only the command line
    assert w.wait(5).cause == "exited by itself"
    assert w.unexpected_exits()
