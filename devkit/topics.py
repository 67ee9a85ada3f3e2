"""Topic administration on a dev broker: create (and wait until every partition has a leader),
ensure, list, delete, per-topic configs. Reading records and offsets back: ``devkit.records``."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined,unused-ignore]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

#: The devkit's own clients stay quiet while a broker is away (a chaos run stops it on purpose).
QUIET: dict[str, Any] = {"log_level": 2}


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, **QUIET})


def unique_topic(prefix: str = "test") -> str:
    """A topic name nobody used before, e.g. ``test.3f9c2a1b7d4e``."""
    return f"{prefix}.{uuid.uuid4().hex[:12]}"


def existing_topics(bootstrap: str, timeout: float = 10.0) -> set[str]:
    return set(admin(bootstrap).list_topics(timeout=timeout).topics)


def wait_for_leaders(a: AdminClient, partitions: Mapping[str, int], timeout: float = 30.0) -> None:
    """Until the broker's metadata serves every topic with its partitions all led: creation is
    acknowledged by the controller before the broker knows it."""
    deadline = time.monotonic() + timeout
    while True:
        md = a.list_topics(timeout=timeout)
        if all(
            (t := md.topics.get(name)) is not None
            and t.error is None
            and len(t.partitions) == n
            and all(p.leader >= 0 for p in t.partitions.values())
            for name, n in partitions.items()
        ):
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"topics {sorted(partitions)} have no leader for every partition after {timeout}s")
        time.sleep(0.05)


def create_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int = 1,
    config: Mapping[str, str] | None = None,
    *,
    exist_ok: bool = False,
    timeout: float = 30.0,
) -> list[str]:
    """Create ``names`` (one replica each) and wait until the broker serves them; returns the
    names created (``exist_ok``: topics that already exist are skipped, not an error)."""
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return []
    a = admin(bootstrap)  # keep a reference: the futures fail if the client is collected
    new = [NewTopic(n, num_partitions=partitions, replication_factor=1, config=dict(config or {})) for n in wanted]
    created: list[str] = []
    for name, fut in a.create_topics(new, operation_timeout=timeout, request_timeout=timeout).items():
        try:
            fut.result(timeout=timeout)
            created.append(name)
        except KafkaException as exc:
            if not (exist_ok and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS):
                raise
    md = a.list_topics(timeout=timeout)
    # An existing topic keeps its own partition count: wait for that one's leaders.
    counts = {n: (partitions if n in created or n not in md.topics else len(md.topics[n].partitions)) for n in wanted}
    wait_for_leaders(a, counts, timeout)
    return created


def create_topic(
    bootstrap: str,
    name: str,
    partitions: int = 1,
    config: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> None:
    """Create one topic and wait until the broker serves it (an existing topic is an error)."""
    create_topics(bootstrap, [name], partitions, config, timeout=timeout)


def ensure_topic(bootstrap: str, name: str, partitions: int = 1, config: Mapping[str, str] | None = None) -> None:
    """Create ``name`` unless it exists (e.g. the dead-letter topic every app shares)."""
    create_topics(bootstrap, [name], partitions, config, exist_ok=True)


def delete_topics(bootstrap: str, names: Iterable[str], timeout: float = 30.0) -> None:
    """Delete ``names``, best effort (a topic already gone is fine)."""
    names = list(names)
    if not names:
        return
    a = admin(bootstrap)
    for fut in a.delete_topics(names, operation_timeout=timeout).values():
        with contextlib.suppress(Exception):
            fut.result()


def set_topic_config(bootstrap: str, topic: str, configs: Mapping[str, str], timeout: float = 30.0) -> None:
    """Set (incrementally) ``configs`` on ``topic``, e.g. to force the log cleaner on it."""
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in configs.items()])  # fmt: skip
    for fut in admin(bootstrap).incremental_alter_configs([res], request_timeout=timeout).values():
        fut.result()


def topic_config(bootstrap: str, topic: str, timeout: float = 30.0) -> dict[str, str]:
    """Every config of ``topic`` as the broker reports it."""
    res = ConfigResource(ResourceType.TOPIC, topic)
    got = admin(bootstrap).describe_configs([res], request_timeout=timeout)[res].result()
    return {k: v.value for k, v in got.items()}
