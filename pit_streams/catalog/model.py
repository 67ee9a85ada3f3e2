"""The catalog's model: ``TopicSpec`` and ``Catalog``, read from ``infra/topics.yaml``.

Reading checks the file's shape only; the platform rules live in ``rules``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pit_streams.contract.naming import domain_of
from pit_streams.errors import ConfigError

CATALOG_ENV = "PIT_CATALOG"
DEFAULT_CATALOG = Path("infra") / "topics.yaml"

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
        return domain_of(self.name)

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
