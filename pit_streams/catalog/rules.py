"""The platform rules a catalog must obey (docs/adr/0004-catalog-and-manifests.md): names,
compaction of state topics, delete-only audit topics, payload types that exist, no float money."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from pathlib import Path

from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from pit_streams.catalog.model import Catalog, TopicSpec
from pit_streams.contract.naming import DEAD_LETTER_TOPIC, DOMAINS, TOPIC_GRAMMAR, is_changelog, is_topic_name

DEAD_LETTER_PAYLOAD_TYPE = "google.protobuf.BytesValue"
"""Dead letters are envelopes of the refused bytes (docs/adr/0005-dead-letter-envelopes.md)."""
KINDS = ("audit", "state", "ops")
CLEANUP_POLICIES = ("delete", "compact", "compact,delete")
CHANGELOG_PAYLOAD_TYPES = ("google.protobuf.Int64Value", "google.protobuf.ListValue", "google.protobuf.Struct")
AUDIT_MIN_RETENTION_MS = 30 * 24 * 3600 * 1000
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
        if not is_topic_name(spec.name):
            bad("name", f"must follow {TOPIC_GRAMMAR}: lower-case, domain in " + "|".join(DOMAINS))
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
        if is_changelog(spec.name) and spec.kind != "state":
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
    if is_changelog(spec.name) and set(spec.payload_types) != set(CHANGELOG_PAYLOAD_TYPES):
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
