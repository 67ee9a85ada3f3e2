"""The platform's naming rules, from their one home (``pit_streams.contract.naming``)."""

from __future__ import annotations

from pathlib import Path

import pytest

import pit_streams
from pit_streams.acl import ProducerSpec, access_of
from pit_streams.catalog import Catalog, TopicSpec, check_catalog
from pit_streams.contract import naming
from pit_streams.errors import DeclarationError
from pit_streams.state import changelog


@pytest.mark.parametrize(
    ("topic", "ok"),
    [
        ("pit.v1.exec.trade_fill", True),
        ("pit.v12.ops.dead_letter", True),
        ("pit.v1.runtime.nav_consumer_changelog", True),
        ("pit.v1.money.trade_fill", False),  # unknown domain
        ("pit.v1.exec.Trade_fill", False),
        ("pit.v1.exec", False),
        ("bench.x.fills", False),
    ],
)
def test_topic_grammar(topic: str, ok: bool) -> None:
    assert naming.is_topic_name(topic) is ok


def test_changelog_name_and_its_recognition() -> None:
    name = naming.changelog_topic("nav-consumer")
    assert name == "pit.v1.runtime.nav_consumer_changelog"
    assert naming.is_changelog(name) and naming.is_topic_name(name)
    assert not naming.is_changelog(naming.DEAD_LETTER_TOPIC)


@pytest.mark.parametrize("group", ["Nav", "nav_consumer", "-nav", "nav-", "1nav", ""])
def test_a_group_that_cannot_name_a_changelog_is_a_declaration_error(group: str) -> None:
    with pytest.raises(DeclarationError, match="lower-case letters, digits and '-'"):
        naming.changelog_topic(group)


def test_every_user_of_a_rule_reads_it_from_one_home() -> None:
    # The same objects, not equal copies: a change in naming.py reaches every user.
    assert pit_streams.DEAD_LETTER_TOPIC is naming.DEAD_LETTER_TOPIC
    assert changelog.changelog_topic is naming.changelog_topic
    app = pit_streams.App("nav-consumer")
    assert app.changelog_topic == naming.changelog_topic("nav-consumer")
    assert naming.DEAD_LETTER_TOPIC in app.writes()
    rules = access_of(app).rules()
    assert any(r.resource_type == "transactionalId" and r.name == naming.transactional_id_prefix("nav-consumer")
               for r in rules)
    with pytest.raises(DeclarationError, match=r"pit\.v\{N\}\.\{domain\}\.\{event\}"):
        ProducerSpec("p-x", writes=["pit.v1.money.x"])


def test_the_catalog_checks_names_with_the_same_grammar() -> None:
    bad = TopicSpec("pit.v1.money.x", "audit", ("google.protobuf.Int64Value",), 1, 1, 1, "delete", -1, "o", "d")
    problems = check_catalog(Catalog(Path("topics.yaml"), (bad,)))
    assert any("[name] must follow pit.v{N}.{domain}.{event}" in p for p in problems)
