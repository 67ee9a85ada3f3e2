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

import argparse
import importlib
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pit_streams.app import App
from pit_streams.catalog import TOPIC_NAME_RE
from pit_streams.errors import ConfigError, DeclarationError

DEFAULT_CLUSTER = "pit-kafka"
STRIMZI_API = "kafka.strimzi.io/v1beta2"
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]*[a-z0-9]$")


@dataclass(frozen=True)
class ProducerSpec:
    """A service that only produces: its name (Kafka principal ``CN=<name>``, KafkaUser name)
    and the topics it writes."""

    name: str
    writes: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise DeclarationError(
                f"producer name {self.name!r} must be lower-case letters, digits and '-' (e.g. 'tradefill-producer')"
            )
        topics = tuple(self.writes)
        if isinstance(self.writes, str) or not topics:
            raise DeclarationError(f"producer {self.name!r}: writes must list at least one topic")
        for topic in topics:
            if not TOPIC_NAME_RE.match(topic):
                raise DeclarationError(
                    f"producer {self.name!r}: topic {topic!r} does not follow pit.v{{N}}.{{domain}}.{{event}}"
                )
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
            out.append(AclRule("transactionalId", f"{self.group}-", ("Describe", "Write"), prefixed=True))
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


# --------------------------------------------------------------------------- finding declarations


@dataclass(frozen=True)
class Declared:
    """An ``App`` or ``ProducerSpec`` and the ``-A`` spec that loads it (``apps.nav``, ``apps.x:attr``)."""

    spec: str
    target: App | ProducerSpec

    @property
    def name(self) -> str:
        return self.target.name


def _import(module_name: str) -> Any:
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"cannot import {module_name!r} ({exc}): pass -A package.module, run from the directory that contains it"
        ) from None


def load_declared(spec: str) -> Declared:
    """``apps.nav`` (its one ``App`` or ``ProducerSpec``) or ``apps.nav:attr``."""
    module_name, _, attr = spec.partition(":")
    module = _import(module_name)
    if attr:
        target = getattr(module, attr, None)
        if not isinstance(target, App | ProducerSpec):
            raise ConfigError(f"{spec} is neither a pit_streams.App nor a ProducerSpec")
        return Declared(spec, target)
    found = [v for v in vars(module).values() if isinstance(v, App | ProducerSpec)]
    if len(found) != 1:
        names = ", ".join(v.name for v in found) or "none"
        raise ConfigError(
            f"{module_name} must define exactly one pit_streams.App or ProducerSpec (found {names}):"
            f" name one with -A {module_name}:attr"
        )
    return Declared(module_name, found[0])


def discover_declared(apps_dir: Path = Path("apps")) -> list[Declared]:
    """Every ``App`` and ``ProducerSpec`` defined in ``apps_dir/*.py`` (imported as ``apps.<stem>``),
    by name. An ``App`` counts in the module that defines its handlers, not one that imports it."""
    package = apps_dir.name
    found: dict[str, Declared] = {}
    for file in sorted(apps_dir.glob("*.py")):
        if file.stem.startswith("_"):
            continue
        module_name = f"{package}.{file.stem}"
        module = _import(module_name)
        owned = [(attr, v) for attr, v in vars(module).items() if _defined_in(v, module_name)]
        for attr, target in owned:
            spec = module_name if len(owned) == 1 else f"{module_name}:{attr}"
            previous = found.get(target.name)
            if previous is not None and previous.target is not target:
                raise ConfigError(f"two declarations named {target.name!r}: {previous.spec} and {spec}")
            found.setdefault(target.name, Declared(spec, target))
    return [found[name] for name in sorted(found)]


def _defined_in(value: object, module_name: str) -> bool:
    if isinstance(value, App):
        return any(h.fn.__module__ == module_name for h in value.handlers.values())
    return isinstance(value, ProducerSpec)


def resolve_declared(specs: Iterable[str] | None, apps_dir: Path = Path("apps")) -> list[Declared]:
    """The ``-A`` specs given, or else everything in ``apps/``."""
    chosen = list(specs or [])
    if chosen:
        return sorted((load_declared(s) for s in chosen), key=lambda d: d.name)
    if not apps_dir.is_dir():
        raise ConfigError(f"no {apps_dir}/ directory here (cwd {Path.cwd()}): run from the repository root or pass -A")
    return discover_declared(apps_dir)


# --------------------------------------------------------------------------- CLI


def add_acl_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("acl", help="print the Kafka ACLs (or Strimzi KafkaUser) an app's principal needs")
    p.add_argument("-A", "--app", action="append", dest="apps", metavar="MODULE",
                   help="app or producer module, e.g. apps.nav (repeatable; default: everything in apps/)")
    p.add_argument("--format", choices=("text", "yaml"), default="text")
    p.add_argument("--cluster", default=DEFAULT_CLUSTER, help="Strimzi Kafka cluster name (yaml)")
    p.set_defaults(command=_run_acl)


def _run_acl(args: argparse.Namespace) -> int:
    declared = resolve_declared(args.apps)
    if not declared:
        raise ConfigError("no App or ProducerSpec found: pass -A apps.module")
    if args.format == "yaml":
        docs = [kafka_user(access_of(d.target), args.cluster) for d in declared]
        sys.stdout.write(yaml.safe_dump_all(docs, sort_keys=True, default_flow_style=False, width=120))
    else:
        print("\n\n".join(describe(access_of(d.target), d.spec) for d in declared))
    return 0
