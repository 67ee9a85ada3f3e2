"""An app against the catalog: a worker refuses to start if its app touches a topic, or a
payload type, that the catalog does not list."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pit_streams.app import App
from pit_streams.catalog.model import Catalog, TopicSpec, load_catalog
from pit_streams.contract.naming import DEAD_LETTER_TOPIC
from pit_streams.errors import ConfigError
from pit_streams.suggest import did_you_mean

FIX_MISSING = "add it to infra/topics.yaml and run 'pit-streams topics apply'"


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
