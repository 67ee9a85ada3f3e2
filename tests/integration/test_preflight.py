"""A worker checks its topics on the broker before it joins the group: a missing or
differently shaped topic is one line naming ``pit-streams topics apply``, exit 2, never ready."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from kafka_support import REPO_ROOT, create_topic
from support import DEAD_LETTER_PARTITIONS, Scenario, committed, ensure_topic, fill, produce

from pit_streams import DEAD_LETTER_TOPIC

pytestmark = pytest.mark.kafka

APP_MODULE = "tests.integration.worker_app"


def _start(sc: Scenario, catalog_from: Scenario, tmp_path: Path, idle_exit: float = 0.5) -> tuple[int, str]:
    catalog = tmp_path / "topics.yaml"
    catalog.write_text(catalog_from.catalog_yaml())
    res = subprocess.run(
        [sys.executable, "-m", "pit_streams.cli", "worker", "-A", APP_MODULE, "--broker", sc.bootstrap,
         "--catalog", str(catalog), "--data-dir", str(tmp_path / "data"), "--health-port", "-1",
         "--idle-exit", str(idle_exit)],
        cwd=REPO_ROOT, env={**os.environ, "PIT_IT_APP": sc.name, "PIT_IT_SOURCE": sc.source,
                            "PIT_IT_OUTPUT": sc.output},
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return res.returncode, res.stderr


def test_missing_output_topic_refuses_to_start_naming_topics_apply(kafka_bootstrap: str, tmp_path: Path) -> None:
    sc = Scenario(kafka_bootstrap)
    sc.create(output=False)
    rc, stderr = _start(sc, sc, tmp_path)
    assert rc == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    [line] = lines
    assert line.startswith(f"pit-streams: app {sc.name!r} cannot start: {sc.output} does not exist")
    assert "run 'pit-streams topics apply'" in line


def test_under_partitioned_and_wrongly_compacted_topics_are_refused(kafka_bootstrap: str, tmp_path: Path) -> None:
    sc = Scenario(kafka_bootstrap)
    create_topic(kafka_bootstrap, sc.source, 1)
    create_topic(kafka_bootstrap, sc.output, 2)
    create_topic(kafka_bootstrap, sc.changelog, 2)  # not compacted: state would be lost to retention
    ensure_topic(kafka_bootstrap, DEAD_LETTER_TOPIC, DEAD_LETTER_PARTITIONS)
    rc, stderr = _start(sc, replace(sc, partitions=2), tmp_path)
    assert rc == 2, stderr
    [line] = stderr.strip().splitlines()
    assert f"{sc.source} has 1 partitions (catalog 2)" in line
    assert f"{sc.changelog} has cleanup.policy=delete (catalog compact)" in line
    assert sc.output not in line  # the right-shaped topic is not blamed
    assert line.endswith("run 'pit-streams topics apply' (it creates missing topics and reports drifted ones)")


def test_catalogued_topics_on_the_broker_start_and_report_committed_records(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    sc = Scenario(kafka_bootstrap)
    sc.create()
    produce(kafka_bootstrap, sc.source, [fill(), fill(), fill()])
    rc, stderr = _start(sc, sc, tmp_path, idle_exit=8)  # joining the group takes seconds: idle starts at once
    assert rc == 0, stderr
    assert "worker stopped cleanly: 3 record(s) committed; 0 handling(s) not committed" in stderr
    assert committed(kafka_bootstrap, sc.name, sc.source, 1) == {0: 3}
