"""The topic catalog, ``infra/topics.yaml``: the single source of truth for every topic.

Three uses, one file:

- ``pit-streams topics check`` — the catalog obeys the platform contract (names, compaction of
  state topics, delete-only audit topics, payload types that exist, no float money);
- ``check_app_against_catalog`` — a worker refuses to start if its app touches a topic, or a
  payload type, that the catalog does not list;
- ``pit-streams topics apply`` — creates missing topics with the catalogued settings and reports
  (never changes) existing topics that differ.

See docs/adr/0004-catalog-and-manifests.md for the rules and why.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from pit_streams.app import DEAD_LETTER_TOPIC, App
from pit_streams.errors import ConfigError
from pit_streams.suggest import did_you_mean

CATALOG_ENV = "PIT_CATALOG"
DEFAULT_CATALOG = Path("infra") / "topics.yaml"
DEAD_LETTER_PAYLOAD_TYPE = "google.protobuf.BytesValue"
"""Dead letters are envelopes of the refused bytes (docs/adr/0005-dead-letter-envelopes.md)."""

KINDS = ("audit", "state", "ops")
CLEANUP_POLICIES = ("delete", "compact", "compact,delete")
DOMAINS = ("exec", "acct", "risk", "policy", "strategy", "runtime", "checkpoint", "ops")
TOPIC_NAME_RE = re.compile(r"^pit\.v[0-9]+\.(" + "|".join(DOMAINS) + r")\.[a-z0-9_]+$")
CHANGELOG_RE = re.compile(r"^pit\.v[0-9]+\.runtime\.[a-z0-9_]+_changelog$")
CHANGELOG_PAYLOAD_TYPES = ("google.protobuf.Int64Value", "google.protobuf.ListValue", "google.protobuf.Struct")
AUDIT_MIN_RETENTION_MS = 30 * 24 * 3600 * 1000
FIX_MISSING = "add it to infra/topics.yaml and run 'pit-streams topics apply'"

_REQUIRED = {
    "name": str,
    "kind": str,
    "payload_types": list,
    "partitions": int,
    "replicas": int,
    "min_insync_replicas": int,
    "cleanup_policy": str,
    "retention_ms": int,
    "owner": str,
    "description": str,
}
_OPTIONAL = {"config": dict}
# Settings with a field of their own: `config` may not set them a second time.
_FIRST_CLASS_CONFIGS = ("cleanup.policy", "retention.ms", "min.insync.replicas")

# A field holds money if one of its name's words is one of these (snake_case or camelCase).
MONEY_WORDS = frozenset(
    {
        "amount", "amt", "balance", "cash", "commission", "cost", "costs", "equity", "exposure", "fee",
        "fees", "margin", "micros", "nav", "notional", "pnl", "premium", "price", "prices", "proceeds",
        "px", "qty", "quantity", "usd",
    }
)  # fmt: skip
_FLOAT_TYPES = (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE)
_FLOAT_WRAPPERS = ("google.protobuf.DoubleValue", "google.protobuf.FloatValue")
_WORD_RE = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")

log = logging.getLogger("pit_streams.catalog")


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class TopicSpec:
    """One catalog entry."""

    name: str
    kind: str
    payload_types: tuple[str, ...]
    partitions: int
    replicas: int
    min_insync_replicas: int
    cleanup_policy: str
    retention_ms: int
    owner: str
    description: str
    config: Mapping[str, str] = field(default_factory=dict)

    @property
    def domain(self) -> str:
        parts = self.name.split(".")
        return parts[2] if len(parts) > 2 else ""

    def accepts(self, payload_type: str) -> bool:
        return payload_type in self.payload_types

    def kafka_config(self, *, replicas: int | None = None) -> dict[str, str]:
        """The topic configs to create it with. ``replicas`` (a dev override) caps min ISR."""
        min_isr = self.min_insync_replicas if replicas is None else min(self.min_insync_replicas, replicas)
        return {
            "cleanup.policy": self.cleanup_policy,
            "retention.ms": str(self.retention_ms),
            "min.insync.replicas": str(min_isr),
            **{k: str(v) for k, v in sorted(self.config.items())},
        }


@dataclass(frozen=True)
class Catalog:
    path: Path
    topics: tuple[TopicSpec, ...]

    def get(self, name: str) -> TopicSpec | None:
        for spec in self.topics:
            if spec.name == name:
                return spec
        return None

    def names(self) -> list[str]:
        return [t.name for t in self.topics]

    def __iter__(self) -> Iterator[TopicSpec]:
        return iter(self.topics)


def resolve_catalog_path(path: str | os.PathLike[str] | None) -> Path:
    """``path``, else ``$PIT_CATALOG``, else ``infra/topics.yaml`` relative to the working directory."""
    if path:
        return Path(path)
    env = os.environ.get(CATALOG_ENV)
    return Path(env) if env else DEFAULT_CATALOG


def parse_catalog(text: str, path: Path) -> tuple[Catalog, list[str]]:
    """The well-formed entries of a catalog and one problem line per malformed one."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return Catalog(path, ()), [f"{path}: not valid YAML: {str(exc).splitlines()[0]}"]
    if not isinstance(doc, dict) or not isinstance(doc.get("topics"), list) or set(doc) != {"topics"}:
        return Catalog(path, ()), [f"{path}: [shape] must be a mapping with one key, 'topics', holding a list"]
    problems: list[str] = []
    specs: list[TopicSpec] = []
    for index, entry in enumerate(doc["topics"]):
        label = f"topics[{index}]"
        if not isinstance(entry, dict):
            problems.append(f"{label}: [shape] each entry must be a mapping")
            continue
        if isinstance(entry.get("name"), str):
            label = entry["name"]
        bad = _shape_problems(entry)
        if bad:
            problems.extend(f"{label}: [shape] {p}" for p in bad)
            continue
        specs.append(
            TopicSpec(
                name=entry["name"],
                kind=entry["kind"],
                payload_types=tuple(entry["payload_types"]),
                partitions=entry["partitions"],
                replicas=entry["replicas"],
                min_insync_replicas=entry["min_insync_replicas"],
                cleanup_policy=entry["cleanup_policy"].replace(" ", ""),
                retention_ms=entry["retention_ms"],
                owner=entry["owner"],
                description=entry["description"],
                config={str(k): str(v) for k, v in (entry.get("config") or {}).items()},
            )
        )
    return Catalog(path, tuple(specs)), problems


def _shape_problems(entry: Mapping[str, Any]) -> list[str]:
    out = []
    for key in sorted(set(entry) - set(_REQUIRED) - set(_OPTIONAL)):
        out.append(f"unknown field {key!r} (fields: {', '.join([*_REQUIRED, *_OPTIONAL])})")
    for key, typ in [*_REQUIRED.items(), *_OPTIONAL.items()]:
        if key not in entry:
            if key in _REQUIRED:
                out.append(f"missing field {key!r}")
            continue
        value = entry[key]
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            out.append(f"{key!r} must be a {typ.__name__}, got {value!r}")
    types = entry.get("payload_types")
    if isinstance(types, list) and not all(isinstance(t, str) for t in types):
        out.append("'payload_types' must list protobuf names as strings")
    config = entry.get("config")
    if isinstance(config, dict) and not all(isinstance(v, str | int) and not isinstance(v, bool)
                                            for v in config.values()):
        out.append("'config' values must be strings or integers")
    return out


def load_catalog(path: str | os.PathLike[str] | None = None) -> Catalog:
    """Read and parse the catalog; ``ConfigError`` if it is missing or malformed."""
    resolved = resolve_catalog_path(path)
    try:
        text = resolved.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"topic catalog {resolved} not found (cwd {Path.cwd()}): run from the repository root,"
            f" pass --catalog PATH or set {CATALOG_ENV}"
        ) from None
    catalog, problems = parse_catalog(text, resolved)
    if problems:
        raise ConfigError(
            f"topic catalog {resolved} is malformed: {'; '.join(problems)}: run 'pit-streams topics check'"
        )
    return catalog


# --------------------------------------------------------------------------- the rules


def default_pool() -> descriptor_pool.DescriptorPool:
    """The default descriptor pool, after importing every installed pit-proto module and the
    well-known types, so payload names resolve without the caller importing anything."""
    for module in ("any_pb2", "duration_pb2", "empty_pb2", "struct_pb2", "timestamp_pb2", "wrappers_pb2"):
        importlib.import_module(f"google.protobuf.{module}")
    for module in ("pit.envelope.v1.envelope_pb2", "pit.events.v1.events_pb2"):
        importlib.import_module(module)
    # pit-proto ships namespace packages (no __init__.py): find its other *_pb2 modules on disk.
    pit = importlib.import_module("pit")
    for root in pit.__path__:
        for file in sorted(Path(root).rglob("*_pb2.py")):
            relative = file.relative_to(root).with_suffix("")
            importlib.import_module(".".join(("pit", *relative.parts)))
    return descriptor_pool.Default()


def money_float_fields(message: Descriptor) -> list[str]:
    """Paths of float/double fields with a money name in ``message`` and every message it nests.

    A ``DoubleValue``/``FloatValue`` field or a ``map<_, double>`` counts under its own name.
    """
    found: list[str] = []
    seen: set[tuple[str, str]] = set()

    def walk(desc: Descriptor, path: str, alias: str | None) -> None:
        if (desc.full_name, alias or "") in seen:
            return
        seen.add((desc.full_name, alias or ""))
        transparent = desc.GetOptions().map_entry or desc.full_name in _FLOAT_WRAPPERS
        for f in desc.fields:
            name = alias if transparent and alias and f.name == "value" else f.name
            where = f"{path}.{f.name}"
            if f.type in _FLOAT_TYPES:
                if is_money_name(name):
                    found.append(where)
            elif f.message_type is not None:
                walk(f.message_type, where, f.name)

    walk(message, message.full_name, None)
    return found


def is_money_name(name: str) -> bool:
    return any(w.lower() in MONEY_WORDS for w in _WORD_RE.findall(name.replace("_", " ")))


def check_catalog(catalog: Catalog, pool: descriptor_pool.DescriptorPool | None = None) -> list[str]:
    """One line per broken rule, each naming the entry and the rule; empty when the catalog is sound."""
    pool = pool if pool is not None else default_pool()
    problems: list[str] = []
    seen: set[str] = set()
    for spec in catalog:
        def bad(rule: str, msg: str, name: str = spec.name) -> None:
            problems.append(f"{name}: [{rule}] {msg}")

        if spec.name in seen:
            bad("duplicate", "listed more than once: keep one entry per topic")
        seen.add(spec.name)
        if not TOPIC_NAME_RE.match(spec.name):
            bad("name", "must follow pit.v{N}.{domain}.{event}: lower-case, domain in " + "|".join(DOMAINS))
        if spec.kind not in KINDS:
            bad("kind", f"{spec.kind!r} is not one of {', '.join(KINDS)}")
        if spec.cleanup_policy not in CLEANUP_POLICIES:
            bad("cleanup", f"cleanup_policy {spec.cleanup_policy!r} is not one of {', '.join(CLEANUP_POLICIES)}")
        if spec.kind == "state" and "compact" not in spec.cleanup_policy.split(","):
            bad("state-compacted", "a state topic must be compacted: cleanup_policy compact or"
                f" 'compact,delete', not {spec.cleanup_policy!r}")
        if spec.kind in ("audit", "ops") and spec.cleanup_policy != "delete":
            bad("immutable", f"an {spec.kind} topic is an immutable log: cleanup_policy delete,"
                f" not {spec.cleanup_policy!r}")
        if CHANGELOG_RE.match(spec.name) and spec.kind != "state":
            bad("changelog-state", "a changelog is a state topic: kind state, cleanup_policy compact")
        _check_retention(spec, bad)
        if spec.partitions < 1:
            bad("partitions", f"partitions must be at least 1, not {spec.partitions}")
        if spec.replicas < 1:
            bad("replicas", f"replicas must be at least 1, not {spec.replicas}")
        if not 1 <= spec.min_insync_replicas <= max(spec.replicas, 1):
            bad("min-isr", f"min_insync_replicas must be between 1 and replicas ({spec.replicas}),"
                f" not {spec.min_insync_replicas}")
        for key in spec.config:
            if key in _FIRST_CLASS_CONFIGS:
                bad("config", f"config sets {key}: use the entry's own field for it")
        if not spec.owner.strip() or not spec.description.strip():
            bad("documented", "owner and description must not be empty")
        _check_payload_types(spec, pool, bad)
    return problems


def _check_retention(spec: TopicSpec, bad: Callable[[str, str], None]) -> None:
    if spec.retention_ms < -1 or spec.retention_ms == 0:
        bad("retention", f"retention_ms must be -1 (forever) or positive, not {spec.retention_ms}")
        return
    if spec.cleanup_policy == "compact" and spec.retention_ms != -1:
        bad("retention", "retention_ms has no effect with cleanup_policy compact: set -1, or use"
            " 'compact,delete' for an explicit retention window")
    if spec.cleanup_policy == "compact,delete" and spec.retention_ms == -1:
        bad("retention", "'compact,delete' needs an explicit retention window: set retention_ms")
    if spec.kind == "audit" and spec.retention_ms != -1 and spec.retention_ms < AUDIT_MIN_RETENTION_MS:
        bad("retention", f"an audit topic keeps history: retention_ms -1 or at least {AUDIT_MIN_RETENTION_MS}"
            f" (30 days), not {spec.retention_ms}")


def _check_payload_types(spec: TopicSpec, pool: descriptor_pool.DescriptorPool,
                         bad: Callable[[str, str], None]) -> None:
    if not spec.payload_types:
        bad("payload-type", "payload_types must list at least one protobuf message")
        return
    if spec.name == DEAD_LETTER_TOPIC and spec.payload_types != (DEAD_LETTER_PAYLOAD_TYPE,):
        bad("payload-type", f"the dead-letter topic carries {DEAD_LETTER_PAYLOAD_TYPE} envelopes of the refused"
            " bytes (docs/adr/0005-dead-letter-envelopes.md)")
    if CHANGELOG_RE.match(spec.name) and set(spec.payload_types) != set(CHANGELOG_PAYLOAD_TYPES):
        bad("payload-type", f"a changelog carries {' and '.join(CHANGELOG_PAYLOAD_TYPES)} envelopes"
            " (pit_streams.state.changelog)")
    for name in spec.payload_types:
        try:
            desc = pool.FindMessageTypeByName(name)
        except KeyError:
            bad("payload-type", f"{name} is not a protobuf message of any installed package: use the full"
                " name from pit-proto (e.g. pit.events.v1.TradeFillEvent), or upgrade pit-proto")
            continue
        for path in money_float_fields(desc):
            bad("money", f"{path} is a float/double money field: the contract (1.4) requires integer"
                " micros (int64 ..._micros) — fix the schema in pit-proto")


# --------------------------------------------------------------------------- apps vs catalog


def app_catalog_problems(app: App, catalog: Catalog) -> list[str]:
    """Everything ``app`` touches that the catalog does not allow, one fix-naming phrase each."""
    problems: list[str] = []

    def need(topic: str, role: str) -> TopicSpec | None:
        spec = catalog.get(topic)
        if spec is None:
            problems.append(f"{role} topic {topic} is not in the catalog{did_you_mean(topic, catalog.names())}:"
                            f" {FIX_MISSING}")
        return spec

    for spec_h in app.handlers.values():
        topic_spec = need(spec_h.topic, "handler")
        payload = spec_h.payload_class.DESCRIPTOR.full_name
        if topic_spec is not None and not topic_spec.accepts(payload):
            problems.append(
                f"handler of {spec_h.topic} declares {payload} but the catalog lists"
                f" {', '.join(topic_spec.payload_types)}: declare the catalogued type or change the catalog"
            )
        for out_topic, out_type in sorted(spec_h.emits.items()):
            out_spec = need(out_topic, "emitted")
            out_name = out_type.DESCRIPTOR.full_name
            if out_spec is not None and not out_spec.accepts(out_name):
                problems.append(
                    f"{spec_h.topic} handler emits {out_name} to {out_topic} but the catalog lists"
                    f" {', '.join(out_spec.payload_types)}: emit the catalogued type or change the catalog"
                )
            if out_spec is not None and out_spec.owner != app.name:
                # The dead-letter topic and the app's changelog are not declared outputs (App refuses
                # them): the framework writes those on the app's behalf.
                problems.append(
                    f"{spec_h.topic} handler emits to {out_topic}, which the catalog says {out_spec.owner!r}"
                    " owns: only a topic's owner writes it (change its owner in the catalog or emit elsewhere)"
                )
    need(DEAD_LETTER_TOPIC, "dead-letter")
    changelog = need(app.changelog_topic, "changelog")
    if changelog is not None:
        if changelog.kind != "state" or "compact" not in changelog.cleanup_policy:
            problems.append(f"changelog {changelog.name} must be kind state with cleanup_policy compact:"
                            " fix infra/topics.yaml")
        for topic in app.reads():
            source = catalog.get(topic)
            if source is not None and source.partitions > changelog.partitions:
                problems.append(
                    f"changelog {changelog.name} has {changelog.partitions} partitions but {topic} has"
                    f" {source.partitions}: give the changelog at least as many in infra/topics.yaml"
                )
    counts = {t: s.partitions for t in app.reads() if (s := catalog.get(t)) is not None}
    if len(set(counts.values())) > 1:
        problems.append(copartitioning_problem(app.name, counts))
    return problems


def copartitioning_problem(app: str, counts: Mapping[str, int]) -> str:
    """One partition store serves partition N of every input, so every input needs the same count."""
    listed = ", ".join(f"{t} has {n}" for t, n in sorted(counts.items()))
    return (f"app {app} reads topics with different partition counts ({listed}): give them the same"
            " number in infra/topics.yaml, or split the app")


def check_app_against_catalog(app: App, path: str | None) -> None:
    """Raise ``ConfigError`` (one line, naming the fix) if ``app`` touches anything the catalog lacks.

    ``path`` None means ``$PIT_CATALOG`` or ``infra/topics.yaml`` relative to the working directory.
    """
    catalog = load_catalog(path)
    problems = app_catalog_problems(app, catalog)
    if problems:
        raise ConfigError(f"app {app.name!r} does not match the topic catalog {catalog.path}: {'; '.join(problems)}")


def check_topics_catalogued(owner: str, topics: Sequence[str], catalog: Catalog) -> None:
    """``ConfigError`` if any of ``topics`` (written or read by ``owner``) is not catalogued."""
    missing = [t for t in topics if catalog.get(t) is None]
    if missing:
        raise ConfigError(f"{owner} uses {', '.join(missing)}, not in the topic catalog {catalog.path}: {FIX_MISSING}")


# --------------------------------------------------------------------------- apply


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


# --------------------------------------------------------------------------- CLI


def add_topics_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("topics", help="check the topic catalog or create its topics")
    topics = p.add_subparsers(dest="topics_cmd", required=True)
    check = topics.add_parser("check", help="check infra/topics.yaml against the platform contract")
    check.add_argument("--catalog", help=f"catalog file (default: ${CATALOG_ENV} or {DEFAULT_CATALOG})")
    check.set_defaults(command=_run_check)
    apply = topics.add_parser("apply", help="create missing topics, report drifted ones (never changes them)")
    apply.add_argument("--broker", help="Kafka bootstrap host:port (default: $PIT_KAFKA_BOOTSTRAP)")
    apply.add_argument("--catalog", help=f"catalog file (default: ${CATALOG_ENV} or {DEFAULT_CATALOG})")
    apply.add_argument("--replicas-override", type=int, metavar="N",
                       help="replication factor for every topic (dev/test clusters with fewer brokers)")
    apply.add_argument("--dry-run", action="store_true", help="say what would be created, create nothing")
    apply.set_defaults(command=_run_apply)


def _run_check(args: argparse.Namespace) -> int:
    path = resolve_catalog_path(args.catalog)
    if not path.is_file():
        load_catalog(path)  # raises the ConfigError that names the fix
    catalog, problems = parse_catalog(path.read_text(encoding="utf-8"), path)
    problems += check_catalog(catalog)
    if not problems and Path("apps").is_dir():
        from pit_streams.acl import discover_declared

        for declared in discover_declared():
            if isinstance(declared.target, App):
                problems += [f"{declared.spec}: {p}" for p in app_catalog_problems(declared.target, catalog)]
    if problems:
        for line in problems:
            print(f"{path}: {line}", file=sys.stderr)
        print(f"{path}: {len(problems)} problem(s)", file=sys.stderr)
        return 2
    print(f"{path}: {len(catalog.topics)} topics, all rules pass")
    return 0


def _run_apply(args: argparse.Namespace) -> int:
    from confluent_kafka.admin import AdminClient

    catalog = load_catalog(args.catalog)
    problems = check_catalog(catalog)
    if problems:
        raise ConfigError(f"{catalog.path} fails 'pit-streams topics check' ({problems[0]}): fix it before applying")
    if args.replicas_override is not None and args.replicas_override < 1:
        raise ConfigError("--replicas-override must be at least 1")
    admin = AdminClient(admin_config(args.broker))
    report = apply_catalog(catalog, admin, replicas_override=args.replicas_override, dry_run=args.dry_run)
    for line in report.errors:
        print(f"pit-streams: {line}", file=sys.stderr)
    if report.errors:
        return 2
    print(f"{len(report.created)} created, {len(report.unchanged)} unchanged, {len(report.drift)} drifted")
    return 0 if report.ok else 1
