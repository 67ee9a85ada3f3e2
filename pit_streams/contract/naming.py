"""The platform's naming rules, in one place: topic grammar, the dead-letter topic, changelog names."""

from __future__ import annotations

import re

DEAD_LETTER_TOPIC = "pit.v1.ops.dead_letter"
DOMAINS = ("exec", "acct", "risk", "policy", "strategy", "runtime", "checkpoint", "ops")
TOPIC_RE = re.compile(rf"^pit\.v[0-9]+\.({'|'.join(DOMAINS)})\.[a-z0-9_]+$")
_GROUP_RE = re.compile(r"^[a-z][a-z0-9-]*[a-z0-9]$")


def changelog_topic(group: str) -> str:
    """The changelog topic of a consumer group: ``nav-consumer`` -> ``pit.v1.runtime.nav_consumer_changelog``."""
    if not _GROUP_RE.match(group):
        raise ValueError(
            f"consumer group {group!r} must be lower-case letters, digits and '-' (e.g. 'nav-consumer')"
        )
    return f"pit.v1.runtime.{group.replace('-', '_')}_changelog"
