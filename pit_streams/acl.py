"""Least privilege, derived from declarations: what each service's principal may do on Kafka.

An ``App`` declares what it reads (its handler topics) and writes (``app.writes()``: outputs,
dead letters, its changelog); its workers also read the changelog back (restore) and use one
consumer group. A service that only produces has no ``App``; it declares itself with a
``ProducerSpec`` in its module::

    producer_spec = pit_streams.acl.ProducerSpec(name="tradefill-producer", writes=["pit.v1.exec.trade_fill"])

From either, ``access_of`` derives the ACLs, which ``pit-streams acl -A apps.nav`` prints and
``pit-streams k8s render`` turns into a Strimzi ``KafkaUser`` (mutual TLS; the principal is
``User:CN=<name>``, the name of the user's certificate).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pit_streams.app import App
from pit_streams.contract.naming import GROUP_NAME_RE, TOPIC_GRAMMAR, is_topic_name, transactional_id_prefix
from pit_streams.errors import DeclarationError

DEFAULT_CLUSTER = "pit-kafka"
STRIMZI_API = "kafka.strimzi.io/v1beta2"


@dataclass(frozen=True)
class ProducerSpec:
    """A service that only produces: its name (Kafka principal ``CN=<name>``, KafkaUser name)
    and the topics it writes."""

    name: str
    writes: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not GROUP_NAME_RE.match(self.name):
            raise DeclarationError(
                f"producer name {self.name!r} must be lower-case letters, digits and '-' (e.g. 'tradefill-producer')"
            )
        topics = tuple(self.writes)
        if isinstance(self.writes, str) or not topics:
            raise DeclarationError(f"producer {self.name!r}: writes must list at least one topic")
        for topic in topics:
            if not is_topic_name(topic):
                raise DeclarationError(f"producer {self.name!r}: topic {topic!r} does not follow {TOPIC_GRAMMAR}")
        object.__setattr__(self, "writes", tuple(sorted(set(topics))))


@dataclass(frozen=True, order=True)
class AclRule:
    """Allow ``operations`` on one resource. ``cluster`` rules have no name; only transactional
    ids are a prefix (a worker's id is its group's name and a suffix of its own)."""

    resource_type: str  # "topic" | "group" | "cluster" | "transactionalId"
    name: str
    operations: tuple[str, ...]
    prefixed: bool = False


@dataclass(frozen=True)
class Access:
    """Everything one service's principal needs, and nothing else."""

    name: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    group: str | None

    @property
    def principal(self) -> str:
        return f"User:CN={self.name}"

    @property
    def topics(self) -> list[str]:
        return sorted({*self.reads, *self.writes})

    def rules(self) -> list[AclRule]:
        out: list[AclRule] = []
        for topic in self.topics:
            ops = {"Describe"}
            if topic in self.reads:
                ops.add("Read")
            if topic in self.writes:
                ops.add("Write")
            out.append(AclRule("topic", topic, tuple(sorted(ops))))
        if self.group is not None:
            out.append(AclRule("group", self.group, ("Read",)))
            # Checkpoints are transactions (docs/adr/0003): ids `{group}-...` only.
            prefix = transactional_id_prefix(self.group)
            out.append(AclRule("transactionalId", prefix, ("Describe", "Write"), prefixed=True))
        if self.writes:
            # The idempotent producer (contract 5.1). Kafka >= 3.0 also allows it to any principal
            # with Write on a topic; naming it keeps older clusters and auditors happy.
            out.append(AclRule("cluster", "kafka-cluster", ("IdempotentWrite",)))
        return out


def access_of(target: App | ProducerSpec) -> Access:
    if isinstance(target, ProducerSpec):
        return Access(target.name, (), tuple(target.writes), None)
    # A worker reads its own changelog back when a partition is assigned (state restore).
    reads = sorted({*target.reads(), target.changelog_topic})
    return Access(target.name, tuple(reads), tuple(target.writes()), target.group)


# --------------------------------------------------------------------------- Strimzi


def kafka_user(access: Access, cluster: str = DEFAULT_CLUSTER) -> dict[str, Any]:
    """A Strimzi ``KafkaUser``: TLS client authentication, simple authorization with ``access``'s ACLs."""
    acls: list[dict[str, Any]] = []
    for rule in access.rules():
        resource: dict[str, Any] = {"type": rule.resource_type}
        if rule.resource_type != "cluster":
            resource.update(name=rule.name, patternType="prefix" if rule.prefixed else "literal")
        acls.append({"resource": resource, "operations": list(rule.operations), "host": "*"})
    return {
        "apiVersion": STRIMZI_API,
        "kind": "KafkaUser",
        "metadata": {
            "name": access.name,
            "labels": {"strimzi.io/cluster": cluster, "app.kubernetes.io/part-of": "pit-streams"},
        },
        "spec": {
            "authentication": {"type": "tls"},
            "authorization": {"type": "simple", "acls": acls},
        },
    }


def acl_bindings(access: Access) -> list[Any]:
    """The same rules as confluent-kafka ``AclBinding``s, for ``AdminClient.create_acls`` on a
    cluster without Strimzi's User Operator (and for the mTLS integration test)."""
    from confluent_kafka.admin import (  # type: ignore[attr-defined]  # re-exported without __all__
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    # librdkafka calls Kafka's CLUSTER resource type BROKER (both are 4 on the wire).
    resource_types = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP, "cluster": ResourceType.BROKER,
                      "transactionalId": ResourceType.TRANSACTIONAL_ID}
    out = []
    for rule in access.rules():
        for op in rule.operations:
            out.append(
                AclBinding(
                    resource_types[rule.resource_type],
                    rule.name,
                    ResourcePatternType.PREFIXED if rule.prefixed else ResourcePatternType.LITERAL,
                    access.principal,
                    "*",
                    AclOperation[re.sub(r"(?<!^)(?=[A-Z])", "_", op).upper()],
                    AclPermissionType.ALLOW,
                )
            )
    return out


def describe(access: Access, source: str = "") -> str:
    """Human-readable: one line per resource."""
    origin = f", declared in {source}" if source else ""
    lines = [f"{access.name}  (principal {access.principal}{origin})"]
    for rule in access.rules():
        label = {"topic": "topic", "group": "consumer group", "cluster": "cluster",
                 "transactionalId": "transactional id"}[rule.resource_type]
        name = f"{rule.name}* (prefix)" if rule.prefixed else rule.name
        lines.append(f"  {label:<16} {name:<45} {', '.join(rule.operations)}")
    return "\n".join(lines)
