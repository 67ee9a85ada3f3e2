"""The platform's naming rules, in one place: topic grammar, the dead-letter topic, changelog names.

Pure: no I/O, no Kafka. The app, the catalog, ACLs, state and the bench all read these rules
from here, so a change to the grammar is one edit.
"""

from __future__ import annotations

import re

from pit_streams.errors import DeclarationError

DOMAINS = ("exec", "acct", "risk", "policy", "strategy", "runtime", "checkpoint", "ops")
TOPIC_GRAMMAR = "pit.v{N}.{domain}.{event}"
TOPIC_NAME_RE = re.compile(rf"^pit\.v[0-9]+\.({'|'.join(DOMAINS)})\.[a-z0-9_]+$")
TOPIC_RE = TOPIC_NAME_RE  # the older name; same rule
DEAD_LETTER_TOPIC = "pit.v1.ops.dead_letter"
CHANGELOG_RE = re.compile(r"^pit\.v[0-9]+\.runtime\.[a-z0-9_]+_changelog$")
GROUP_NAME_RE = re.compile(r"^[a-z][a-z0-9-]*[a-z0-9]$")
"""Consumer groups, producer names and Kafka principals (``CN=<name>``) share one grammar."""


def is_topic_name(topic: str) -> bool:
    """``topic`` follows ``pit.v{N}.{domain}.{event}`` with a known domain."""
    return TOPIC_NAME_RE.match(topic) is not None


def is_changelog(topic: str) -> bool:
    """``topic`` is some consumer group's changelog (written only by the framework)."""
    return CHANGELOG_RE.match(topic) is not None


def domain_of(topic: str) -> str:
    """The domain part of a topic name (``pit.v1.exec.trade_fill`` -> ``exec``); empty if there is none."""
    parts = topic.split(".")
    return parts[2] if len(parts) > 2 else ""


def changelog_topic(group: str) -> str:
    """The changelog topic of a consumer group: ``nav-consumer`` -> ``pit.v1.runtime.nav_consumer_changelog``."""
    if not GROUP_NAME_RE.match(group):
        raise DeclarationError(
            f"consumer group {group!r} must be lower-case letters, digits and '-' (e.g. 'nav-consumer')"
        )
    return f"pit.v1.runtime.{group.replace('-', '_')}_changelog"


def transactional_id_prefix(group: str) -> str:
    """Every transactional id of a group's workers starts with this (docs/adr/0003)."""
    return f"{group}-"
