"""The chaos run's topics and catalog; watermarks, committed offsets, members and range reads
come from the devkit (``devkit.records.Cluster``), from the outside of the runtime under test."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import KafkaException

from devkit.broker import REPO_ROOT as REPO
from devkit.records import Cluster
from devkit.topics import set_topic_config, topic_config
from pit_streams.contract.naming import DEAD_LETTER_TOPIC
from pit_streams.contract.naming import changelog_topic as changelog_of

FILLS = "pit.v1.exec.trade_fill"
NAV = "pit.v1.acct.nav_update"
DEAD_LETTER = DEAD_LETTER_TOPIC
CATALOG = REPO / "infra" / "topics.yaml"


#: The changelog's topic configs that force the log cleaner on it within seconds (with the chaos
#: broker's ``log.cleaner.backoff.ms`` 500, see ``infra/kafka/chaos.properties``): segments roll
#: every second, any dirt makes a segment cleanable, tombstones are dropped 1 s after cleaning.
FORCED_CLEANER = {
    "segment.ms": "1000",
    "min.cleanable.dirty.ratio": "0.01",
    "delete.retention.ms": "1000",
    "min.compaction.lag.ms": "0",
}


def write_catalog(path: Path, groups: Iterable[str], changelog_config: Mapping[str, str] | None = None) -> Path:
    """``infra/topics.yaml`` plus a changelog entry per chaos consumer group (its ``config``
    updated with ``changelog_config``: the topic is created with it, so the catalog has no drift);
    the first group owns NAV."""
    doc = yaml.safe_load(CATALOG.read_text(encoding="utf-8"))
    template = next(t for t in doc["topics"] if t["name"].endswith("_changelog"))
    have = {t["name"] for t in doc["topics"]}
    groups = list(groups)
    for group in groups:
        name = changelog_of(group)
        if name in have:
            continue
        entry = dict(template)
        entry.update(name=name, owner=group,
                     description=f"State and dedupe marks of chaos consumer group {group} (throw-away).")
        if changelog_config:
            entry["config"] = {**(entry.get("config") or {}), **changelog_config}
        doc["topics"].append(entry)
    for topic in doc["topics"]:
        if topic["name"] == NAV and groups:
            # A worker refuses to emit to a topic its group does not own (catalog ownership).
            topic["owner"] = groups[0]
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def apply_topics(bootstrap: str, catalog: Path) -> list[str]:
    """``pit-streams topics apply --broker B --replicas-override 1 --catalog C``; returns the drift
    lines (existing topics that differ from the catalog: reported, never changed — exit status 1)."""
    res = subprocess.run(
        [sys.executable, "-m", "pit_streams.cli", "topics", "apply", "--broker", bootstrap,
         "--replicas-override", "1", "--catalog", str(catalog)],
        cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=180, check=False,
    )  # fmt: skip
    drift = [ln.split(None, 1)[1] for ln in res.stdout.splitlines() if ln.startswith("drift ")]
    if res.returncode != 0 and not (res.returncode == 1 and drift):
        raise RuntimeError(f"pit-streams topics apply failed ({res.returncode}):\n{res.stdout[-3000:]}")
    return drift


class Kafka(Cluster):
    """``devkit.records.Cluster`` plus the chaos run's own reads and topic configs."""

    def count(self, topic: str, end: Mapping[int, int], timeout: float = 300.0) -> dict[int, int]:
        """How many records of ``topic`` with an offset below ``end`` a read_uncommitted reader
        finds per partition now (compaction removes some: the count drops)."""
        got = {p: 0 for p in end}
        for m in self.scan(topic, {}, end, timeout=timeout, isolation="read_uncommitted", eof_ends=True):
            got[m.partition()] += 1
        return got

    def set_topic_config(self, topic: str, configs: Mapping[str, str], timeout: float = 30.0) -> None:
        set_topic_config(self.bootstrap, topic, configs, timeout)

    def topic_config(self, topic: str, timeout: float = 30.0) -> dict[str, str]:
        return topic_config(self.bootstrap, topic, timeout)


def retrying(fn: Any, *args: Any, attempts: int = 1_000_000, deadline: float | None = None) -> Any:
    """Call ``fn`` until it stops raising Kafka errors (the broker may be restarting)."""
    last: Exception | None = None
    for _ in range(attempts):
        if deadline is not None and time.monotonic() > deadline:
            break
        try:
            return fn(*args)
        except (KafkaException, RuntimeError) as exc:
            last = exc
            time.sleep(0.5)
    raise TimeoutError(f"{getattr(fn, '__name__', fn)} kept failing: {last}")
