"""Start-up checks against the broker: every topic the app touches exists as catalogued.

Without them a worker whose topic was never created reports ready, stays silent while the
client waits for metadata, then fails every commit with ``_UNKNOWN_TOPIC``. Checked before the
worker joins its group, so it never reports ready; the refusal is one line naming the fix.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pit_streams.app import App
from pit_streams.errors import ConfigError

FIX = "run 'pit-streams topics apply' (it creates missing topics and reports drifted ones)"


@dataclass(frozen=True)
class Expected:
    """What the catalog says a topic must look like on the broker."""

    name: str
    partitions: int
    cleanup_policy: str


@dataclass(frozen=True)
class Actual:
    """What the broker says: ``None`` partitions means the topic does not exist."""

    partitions: int | None
    cleanup_policy: str | None


def topic_problems(expected: Sequence[Expected], actual: Mapping[str, Actual]) -> list[str]:
    """One phrase per topic that is missing or differs from the catalog."""
    problems: list[str] = []
    for want in expected:
        have = actual.get(want.name, Actual(None, None))
        if have.partitions is None:
            problems.append(f"{want.name} does not exist")
            continue
        if have.partitions != want.partitions:
            problems.append(f"{want.name} has {have.partitions} partitions (catalog {want.partitions})")
        if have.cleanup_policy is not None and _policy(have.cleanup_policy) != _policy(want.cleanup_policy):
            problems.append(f"{want.name} has cleanup.policy={have.cleanup_policy} (catalog {want.cleanup_policy})")
    return problems


def _policy(text: str) -> frozenset[str]:
    return frozenset(p.strip() for p in text.split(",") if p.strip())


def expected_topics(app: App, catalog_path: str | None) -> list[Expected]:
    """The catalogued shape of every topic ``app`` reads or writes (changelog and dead letters too)."""
    from pit_streams.catalog import load_catalog

    catalog = load_catalog(catalog_path)
    out = []
    for name in sorted({*app.reads(), *app.writes()}):
        spec = catalog.get(name)
        if spec is not None:  # an uncatalogued topic was refused before, by check_app_against_catalog
            out.append(Expected(name, spec.partitions, spec.cleanup_policy))
    return out


def describe_topics(admin: Any, names: Sequence[str], timeout_s: float = 15.0) -> dict[str, Actual]:
    """Partition counts and cleanup policies of ``names`` from a confluent-kafka ``AdminClient``."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import ConfigResource, ResourceType  # type: ignore[attr-defined]

    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise ConfigError(f"cannot read the broker's topic metadata ({exc}): check --broker and TLS") from None
    present = [n for n in names if n in metadata.topics and metadata.topics[n].error is None]
    policies: dict[str, str | None] = {n: None for n in present}
    if present:
        futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, n) for n in present],
                                         request_timeout=timeout_s)
        for resource, future in futures.items():
            try:
                entry = future.result(timeout=timeout_s).get("cleanup.policy")
            except KafkaException:
                continue  # not allowed to describe configs: the partition check still holds
            policies[resource.name] = entry.value if entry is not None else None
    return {n: Actual(len(metadata.topics[n].partitions), policies[n]) for n in present}


def check_topics_on_broker(app: App, catalog_path: str | None, broker: str | None) -> None:
    """Raise ``ConfigError`` (one line naming ``pit-streams topics apply``) unless every topic of
    ``app`` exists on the broker with its catalogued partitions and cleanup policy."""
    from confluent_kafka.admin import AdminClient

    from pit_streams.catalog import admin_config
    from pit_streams.transport.base import check_reachable

    expected = expected_topics(app, catalog_path)
    config = admin_config(broker)
    # A missing broker is the transport's one clear line, not an admin client's metadata timeout.
    asyncio.run(check_reachable(str(config["bootstrap.servers"])))
    # Warnings and errors only: at exit librdkafka reports purging its background queue at info
    # level, which would make the one-line refusal two.
    admin = AdminClient({**config, "log_level": 4})
    problems = topic_problems(expected, describe_topics(admin, [e.name for e in expected]))
    if problems:
        raise ConfigError(f"app {app.name!r} cannot start: {'; '.join(problems)}: {FIX}")
