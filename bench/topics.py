"""Topic names of one contender run, and the catalog the pit-streams worker needs for them.

Bench topics are private to a run and NOT catalogued: ``bench.<run-id>.*`` (no ``pit.v1.``
prefix, so nobody takes them for platform topics). The one exception is forced by the
pit-streams runtime, which accepts only ``pit.v{N}.{domain}.{event}`` names and refuses to
start unless every topic it touches is in a catalog: its contender reads a byte-identical copy
of the input under ``pit.v1.exec.bench_<run-id>_fills`` and writes
``pit.v1.acct.bench_<run-id>_<tag>_navs``, with a throw-away catalog (``PIT_CATALOG``) listing
exactly those, its changelog and the dead-letter topic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from devkit.topics import create_topics, existing_topics
from pit_streams.catalog import CHANGELOG_PAYLOAD_TYPES
from pit_streams.contract.naming import DEAD_LETTER_TOPIC as DEAD_LETTER
from pit_streams.contract.naming import changelog_topic as changelog_of


def bench_input_topic(run_id: str) -> str:
    return f"bench.{run_id}.fills"


def platform_input_topic(run_id: str) -> str:
    return f"pit.v1.exec.bench_{run_id}_fills"


def _slug(text: str, sep: str) -> str:
    return re.sub(r"[^a-z0-9]+", sep, text.lower()).strip(sep)


@dataclass
class TopicPlan:
    input: str
    output: str
    group: str
    #: (name, partitions, config) created before the contender starts; ``shared`` ones may
    #: already exist (the dead-letter topic) and are never deleted by the harness.
    create: list[tuple[str, int, dict[str, str]]] = field(default_factory=list)
    shared: list[tuple[str, int, dict[str, str]]] = field(default_factory=list)
    catalog: dict[str, object] | None = None

    def names(self) -> list[str]:
        return [n for n, _, _ in self.create]

    def ensure(self, bootstrap: str) -> None:
        for name, partitions, config in self.create:
            create_topics(bootstrap, [name], partitions, config)
        if self.shared:
            have = existing_topics(bootstrap)
            for name, partitions, config in self.shared:
                if name not in have:
                    create_topics(bootstrap, [name], partitions, config)

    def write_catalog(self, path: Path) -> Path | None:
        if self.catalog is None:
            return None
        path.write_text(yaml.safe_dump(self.catalog, sort_keys=False))
        return path


def plan(run_id: str, tag: str, *, platform: bool, input_topic: str | None, partitions: int) -> TopicPlan:
    """Topics of one run of one contender. ``input_topic`` None: the run gets its own fresh
    input topic (latency phase); otherwise it reads the shared pre-produced input."""
    if not platform:
        inp = input_topic or f"bench.{run_id}.{tag}.fills"
        out = f"bench.{run_id}.{tag}.navs"
        p = TopicPlan(inp, out, f"bench-{run_id}-{tag}")
        if input_topic is None:
            p.create.append((inp, partitions, {}))
        p.create.append((out, partitions, {}))
        return p
    slug = _slug(tag, "_")
    inp = input_topic or f"pit.v1.exec.bench_{run_id}_{slug}_fills"
    out = f"pit.v1.acct.bench_{run_id}_{slug}_navs"
    group = _slug(f"bench-{run_id}-{tag}", "-")
    changelog = changelog_of(group)
    p = TopicPlan(inp, out, group)
    if input_topic is None:
        p.create.append((inp, partitions, {}))
    p.create.append((out, partitions, {}))
    p.create.append((changelog, partitions, {"cleanup.policy": "compact"}))
    p.shared.append((DEAD_LETTER, 3, {}))

    def entry(name: str, kind: str, types: list[str], policy: str, retention: int, desc: str) -> dict[str, object]:
        return {
            "name": name, "kind": kind, "payload_types": types, "partitions": partitions if name != DEAD_LETTER
            else 3, "replicas": 1, "min_insync_replicas": 1, "cleanup_policy": policy, "retention_ms": retention,
            "owner": group if name != inp else "bench", "description": desc,
        }  # fmt: skip

    p.catalog = {
        "topics": [
            entry(inp, "audit", ["pit.events.v1.TradeFillEvent"], "delete", -1, "benchmark input (throw-away)"),
            entry(out, "audit", ["pit.events.v1.NAVUpdateEvent"], "delete", -1, "benchmark output (throw-away)"),
            entry(changelog, "state", list(CHANGELOG_PAYLOAD_TYPES), "compact", -1,
                  "benchmark contender's changelog (throw-away)"),
            entry(DEAD_LETTER, "ops", ["google.protobuf.BytesValue"], "delete", 2_592_000_000, "dead letters"),
        ]
    }  # fmt: skip
    return p
