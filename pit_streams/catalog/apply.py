"""``topics apply``: create the catalogued topics that are missing, report (never change) the
existing ones whose settings differ."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pit_streams.catalog.model import Catalog, TopicSpec


@dataclass
class ApplyReport:
    created: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.drift and not self.errors


def admin_config(broker: str | None) -> dict[str, str | int | float | bool]:
    """confluent-kafka client settings: bootstrap from ``--broker``/``$PIT_KAFKA_BOOTSTRAP``,
    mutual TLS from ``$PIT_KAFKA_TLS_DIR`` when set."""
    from pit_streams.security import TlsFiles
    from pit_streams.transport.factory import check_plaintext, resolve_bootstrap

    config: dict[str, str | int | float | bool] = {"bootstrap.servers": resolve_bootstrap(broker)}
    tls = TlsFiles.from_env()
    check_plaintext(str(config["bootstrap.servers"]), tls)
    if tls is not None:
        config.update(tls.librdkafka())
    return config


def apply_catalog(
    catalog: Catalog,
    admin: Any,
    *,
    replicas_override: int | None = None,
    dry_run: bool = False,
    timeout_s: float = 30.0,
    echo: Callable[[str], None] = print,
) -> ApplyReport:
    """Create the catalogued topics that are missing; report those whose settings differ.

    ``admin`` is a ``confluent_kafka.admin.AdminClient``. Existing topics are never changed:
    partitions only grow and config changes deserve a reviewed, deliberate step.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (  # type: ignore[attr-defined]  # re-exported without __all__
        ConfigResource,
        NewTopic,
        ResourceType,
    )

    report = ApplyReport()
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        report.errors.append(f"cannot read cluster metadata: {exc}")
        return report
    brokers = len(metadata.brokers)
    to_create: list[tuple[TopicSpec, int]] = []
    existing: list[tuple[TopicSpec, int]] = []
    for spec in catalog:
        replicas = replicas_override or spec.replicas
        if replicas > brokers:
            report.errors.append(
                f"{spec.name}: the cluster has {brokers} broker(s) but the catalog wants {replicas} replicas:"
                f" on a dev/test cluster pass --replicas-override {brokers}"
            )
            continue
        (existing if spec.name in metadata.topics else to_create).append((spec, replicas))
    if report.errors:
        return report

    if to_create and not dry_run:
        futures = admin.create_topics(
            [NewTopic(s.name, num_partitions=s.partitions, replication_factor=r, config=s.kafka_config(replicas=r))
             for s, r in to_create],
            operation_timeout=timeout_s,
            request_timeout=timeout_s,
        )
        for spec, replicas in to_create:
            try:
                futures[spec.name].result(timeout=timeout_s)
            except KafkaException as exc:
                report.errors.append(f"{spec.name}: create failed: {exc.args[0] if exc.args else exc}")
                continue
            report.created.append(spec.name)
            echo(f"created   {spec.name} ({spec.partitions} partitions, {replicas} replica(s),"
                 f" cleanup.policy={spec.cleanup_policy})")
        _wait_for_leaders(admin, [s for s, _ in to_create if s.name in report.created], timeout_s)
    elif to_create:
        for spec, replicas in to_create:
            echo(f"would create {spec.name} ({spec.partitions} partitions, {replicas} replica(s))")

    if existing:
        resources = [ConfigResource(ResourceType.TOPIC, s.name) for s, _ in existing]
        described = admin.describe_configs(resources, request_timeout=timeout_s)
        by_name = {res.name: fut for res, fut in described.items()}
        for spec, replicas in existing:
            partitions = metadata.topics[spec.name].partitions
            diffs = []
            if len(partitions) != spec.partitions:
                diffs.append(f"partitions {len(partitions)} (catalog {spec.partitions})")
            actual_rf = len(next(iter(partitions.values())).replicas) if partitions else 0
            if actual_rf != replicas:
                diffs.append(f"replicas {actual_rf} (catalog {replicas})")
            try:
                entries = by_name[spec.name].result(timeout=timeout_s)
            except KafkaException as exc:
                report.errors.append(f"{spec.name}: cannot describe its config: {exc}")
                continue
            for key, want in spec.kafka_config(replicas=replicas).items():
                entry = entries.get(key)
                have = entry.value if entry is not None else None
                if have != want:
                    diffs.append(f"{key}={have} (catalog {want})")
            if diffs:
                line = f"{spec.name}: {', '.join(diffs)}"
                report.drift.append(line)
                echo(f"drift     {line} — not changed: fix the topic or the catalog deliberately")
            else:
                report.unchanged.append(spec.name)
                echo(f"ok        {spec.name}")
    return report


def _wait_for_leaders(admin: Any, specs: Sequence[TopicSpec], timeout_s: float) -> None:
    """Creation is acknowledged by the controller; wait until metadata serves every partition."""
    deadline = time.monotonic() + timeout_s
    pending = {s.name: s.partitions for s in specs}
    while pending and time.monotonic() < deadline:
        metadata = admin.list_topics(timeout=timeout_s)
        for name, count in list(pending.items()):
            topic = metadata.topics.get(name)
            if (topic is not None and topic.error is None and len(topic.partitions) == count
                    and all(p.leader >= 0 for p in topic.partitions.values())):
                del pending[name]
        if pending:
            time.sleep(0.1)
