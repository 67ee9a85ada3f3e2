"""infra/topics.yaml: the rules of ``topics check``, apps checked against the catalog at worker
start, and ``topics apply`` against the real broker."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml
from google.protobuf import descriptor_pb2, descriptor_pool
from pit.events.v1.events_pb2 import ExposureSnapshotEvent, NAVUpdateEvent, TradeFillEvent

import pit_streams
from pit_streams.catalog import (
    CATALOG_ENV,
    CHANGELOG_PAYLOAD_TYPES,
    FIX_MISSING,
    check_app_against_catalog,
    check_catalog,
    is_money_name,
    load_catalog,
    money_float_fields,
    parse_catalog,
)
from pit_streams.cli import main
from pit_streams.errors import ConfigError, DeclarationError
from pit_streams.loader import discover_declared
from pit_streams.state.changelog import changelog_topic

REPO_ROOT = Path(__file__).resolve().parent.parent
REPO_CATALOG = REPO_ROOT / "infra" / "topics.yaml"

GOOD = {
    "name": "pit.v1.exec.trade_fill",
    "kind": "audit",
    "payload_types": ["pit.events.v1.TradeFillEvent"],
    "partitions": 8,
    "replicas": 3,
    "min_insync_replicas": 2,
    "cleanup_policy": "delete",
    "retention_ms": -1,
    "owner": "tradefill-producer",
    "description": "fills",
}


def entry(**changes: object) -> dict[str, object]:
    return {**GOOD, **changes}


def write_catalog(tmp_path: Path, *entries: dict[str, object]) -> Path:
    path = tmp_path / "topics.yaml"
    path.write_text(yaml.safe_dump({"topics": list(entries)}, sort_keys=False))
    return path


def problems_of(tmp_path: Path, *entries: dict[str, object]) -> list[str]:
    path = write_catalog(tmp_path, *entries)
    catalog, problems = parse_catalog(path.read_text(), path)
    return problems + check_catalog(catalog)


def run_check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(["topics", "check", "--catalog", str(path)])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line]


# --------------------------------------------------------------------------- the repo's catalog


def test_repo_catalog_passes_topics_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_catalog(load_catalog(REPO_CATALOG)) == []
    assert main(["topics", "check", "--catalog", str(REPO_CATALOG)]) == 0
    assert "all rules pass" in capsys.readouterr().out


def test_repo_catalog_has_the_platform_topics() -> None:
    catalog = load_catalog(REPO_CATALOG)
    fills, navs, dlq = (catalog.get(n) for n in
                        ("pit.v1.exec.trade_fill", "pit.v1.acct.nav_update", pit_streams.DEAD_LETTER_TOPIC))
    assert fills is not None and fills.payload_types == ("pit.events.v1.TradeFillEvent",) and fills.partitions == 8
    assert navs is not None and navs.payload_types == ("pit.events.v1.NAVUpdateEvent",) and navs.partitions == 8
    assert fills.cleanup_policy == navs.cleanup_policy == "delete"
    assert dlq is not None and dlq.payload_types == ("google.protobuf.BytesValue",) and dlq.kind == "ops"
    for spec in catalog:
        assert (spec.replicas, spec.min_insync_replicas) == (3, 2), spec.name


def test_every_app_in_apps_has_a_compacted_changelog_and_matches_the_catalog(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(REPO_ROOT)
    apps = [d.target for d in discover_declared(REPO_ROOT / "apps") if isinstance(d.target, pit_streams.App)]
    assert {a.name for a in apps} >= {"nav-consumer", "nav-analytics"}
    catalog = load_catalog(REPO_CATALOG)
    for app in apps:
        changelog = catalog.get(changelog_topic(app.group))
        assert changelog is not None and changelog.cleanup_policy == "compact", app.name
        assert set(changelog.payload_types) == set(CHANGELOG_PAYLOAD_TYPES)
        check_app_against_catalog(app, str(REPO_CATALOG))  # what the worker runs at start


# --------------------------------------------------------------------------- the rules


def test_bad_name_fails_with_the_entry_and_the_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_catalog(tmp_path, entry(), entry(name="pit.v1.Exec.trade-fills"), entry(name="pit.v1.nav.updates"))
    code, lines = run_check(path, capsys)
    assert code == 2
    assert any("pit.v1.Exec.trade-fills: [name] must follow pit.v{N}.{domain}.{event}" in line for line in lines)
    assert any("pit.v1.nav.updates: [name]" in line for line in lines)
    assert lines[-1].endswith("2 problem(s)")


def _pool_with_float_money() -> tuple[descriptor_pool.DescriptorPool, descriptor_pb2.FileDescriptorProto]:
    """A private pool holding ``pit_streams_test.money.v1.BadFill``: a double ``price_usd``, a nested
    float ``fee``, a ``map<string, double> prices`` and a harmless double ``ratio``."""
    f = descriptor_pb2.FileDescriptorProto(name="pit_streams_test/money.proto",
                                           package="pit_streams_test.money.v1", syntax="proto3")
    F = descriptor_pb2.FieldDescriptorProto
    leg = f.message_type.add(name="Leg")
    leg.field.add(name="fee", number=1, type=F.TYPE_FLOAT, label=F.LABEL_OPTIONAL)
    leg.field.add(name="venue", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    fill = f.message_type.add(name="BadFill")
    fill.field.add(name="price_usd", number=1, type=F.TYPE_DOUBLE, label=F.LABEL_OPTIONAL)
    fill.field.add(name="ratio", number=2, type=F.TYPE_DOUBLE, label=F.LABEL_OPTIONAL)
    fill.field.add(name="leg", number=3, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL,
                   type_name=".pit_streams_test.money.v1.Leg")
    entry_type = fill.nested_type.add(name="PricesEntry")
    entry_type.options.map_entry = True
    entry_type.field.add(name="key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    entry_type.field.add(name="value", number=2, type=F.TYPE_DOUBLE, label=F.LABEL_OPTIONAL)
    fill.field.add(name="prices", number=4, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED,
                   type_name=".pit_streams_test.money.v1.BadFill.PricesEntry")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return pool, f


def test_float_money_field_fails(tmp_path: Path) -> None:
    pool, _ = _pool_with_float_money()
    bad = pool.FindMessageTypeByName("pit_streams_test.money.v1.BadFill")
    assert money_float_fields(bad) == [
        "pit_streams_test.money.v1.BadFill.price_usd",
        "pit_streams_test.money.v1.BadFill.leg.fee",
        "pit_streams_test.money.v1.BadFill.prices.value",
    ]
    path = write_catalog(tmp_path, entry(payload_types=["pit_streams_test.money.v1.BadFill"]))
    problems = check_catalog(load_catalog(path), pool=pool)
    assert len(problems) == 3
    assert problems[0].startswith("pit.v1.exec.trade_fill: [money] pit_streams_test.money.v1.BadFill.price_usd"
                                  " is a float/double money field")
    assert "integer micros" in problems[0]


def test_float_money_field_fails_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, file_proto = _pool_with_float_money()
    default = descriptor_pool.Default()
    try:
        default.FindMessageTypeByName("pit_streams_test.money.v1.BadFill")
    except KeyError:
        default.AddSerializedFile(file_proto.SerializeToString())
    path = write_catalog(tmp_path, entry(payload_types=["pit_streams_test.money.v1.BadFill"]))
    code, lines = run_check(path, capsys)
    assert code == 2
    assert sum("[money]" in line for line in lines) == 3


def test_the_pit_proto_payloads_carry_no_float_money() -> None:
    for message in (TradeFillEvent, NAVUpdateEvent, ExposureSnapshotEvent):
        assert money_float_fields(message.DESCRIPTOR) == []


@pytest.mark.parametrize(
    ("name", "money"),
    [("price_usd", True), ("nav_usd_micros", True), ("priceUsd", True), ("qty", True), ("fee", True),
     ("ratio", False), ("navigation", False), ("value", False), ("slippage_bps", False), ("venue_conc_pct", False)],
)
def test_money_names(name: str, money: bool) -> None:
    assert is_money_name(name) is money


def test_state_topic_must_be_compacted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    changelog = entry(name="pit.v1.runtime.nav_consumer_changelog", kind="state", cleanup_policy="delete",
                      payload_types=list(CHANGELOG_PAYLOAD_TYPES))
    code, lines = run_check(write_catalog(tmp_path, changelog), capsys)
    assert code == 2
    assert any("pit.v1.runtime.nav_consumer_changelog: [state-compacted] a state topic must be compacted" in line
               for line in lines), lines


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        ({"cleanup_policy": "compact"}, "[immutable]"),  # audit topics are never compacted
        ({"kind": "state", "cleanup_policy": "compact", "retention_ms": 86_400_000}, "[retention]"),
        ({"kind": "state", "cleanup_policy": "compact,delete", "retention_ms": -1}, "[retention]"),
        ({"retention_ms": 3_600_000}, "[retention]"),  # audit history kept for an hour
        ({"name": "pit.v1.runtime.x_changelog", "kind": "audit"}, "[changelog-state]"),
        ({"payload_types": ["pit.events.v1.NoSuchEvent"]}, "[payload-type]"),
        ({"payload_types": ["raw"]}, "[payload-type]"),  # every topic carries envelopes of a named type
        ({"name": "pit.v1.ops.dead_letter", "kind": "ops", "retention_ms": 86_400_000,
          "payload_types": ["pit.events.v1.TradeFillEvent"]}, "[payload-type]"),
        ({"payload_types": []}, "[payload-type]"),
        ({"min_insync_replicas": 4}, "[min-isr]"),
        ({"partitions": 0}, "[partitions]"),
        ({"kind": "cache"}, "[kind]"),
        ({"config": {"cleanup.policy": "compact"}}, "[config]"),
        ({"partitions": "eight"}, "[shape]"),
        ({"cleanup.policy": "delete"}, "[shape]"),
    ],
)
def test_each_rule_names_entry_and_rule(tmp_path: Path, changes: dict[str, object], rule: str) -> None:
    problems = problems_of(tmp_path, entry(**changes))
    assert any(rule in p for p in problems), problems
    name = str(changes.get("name", GOOD["name"]))
    assert all(p.startswith(f"{name}: ") for p in problems), problems


def test_duplicates_and_a_missing_field(tmp_path: Path) -> None:
    without_owner = {k: v for k, v in entry(name="pit.v1.acct.nav_update").items() if k != "owner"}
    problems = problems_of(tmp_path, entry(), entry(), without_owner)
    assert "pit.v1.exec.trade_fill: [duplicate] listed more than once: keep one entry per topic" in problems
    assert "pit.v1.acct.nav_update: [shape] missing field 'owner'" in problems


# --------------------------------------------------------------------------- apps vs the catalog


def _app(topic: str = "pit.v1.exec.trade_fill", payload: type = TradeFillEvent,
         emits: dict[str, type] | None = None, name: str = "nav-consumer") -> pit_streams.App:
    app = pit_streams.App(name)

    @app.handler(topic, payload, emits=emits if emits is not None else {"pit.v1.acct.nav_update": NAVUpdateEvent})
    def handle(msg: object, ctx: pit_streams.Context) -> None:
        return None

    return app


def test_app_matching_the_catalog_passes() -> None:
    check_app_against_catalog(_app(), str(REPO_CATALOG))


def test_uncatalogued_topic_refuses_to_start_naming_the_fix() -> None:
    app = _app(emits={"pit.v1.risk.example_not_in_catalog": ExposureSnapshotEvent})
    with pytest.raises(ConfigError) as exc:
        check_app_against_catalog(app, str(REPO_CATALOG))
    message = str(exc.value)
    assert "\n" not in message
    assert f"emitted topic pit.v1.risk.example_not_in_catalog is not in the catalog: {FIX_MISSING}" in message


def test_wrong_payload_type_refuses_to_start() -> None:
    with pytest.raises(ConfigError, match=r"declares pit.events.v1.NAVUpdateEvent but the catalog lists"
                                          r" pit.events.v1.TradeFillEvent: declare the catalogued type"):
        check_app_against_catalog(_app(payload=NAVUpdateEvent), str(REPO_CATALOG))
    with pytest.raises(ConfigError, match=r"emits pit.events.v1.TradeFillEvent to pit.v1.acct.nav_update"):
        check_app_against_catalog(_app(emits={"pit.v1.acct.nav_update": TradeFillEvent}), str(REPO_CATALOG))


def test_missing_changelog_or_dead_letter_topic(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, entry(), entry(name="pit.v1.acct.nav_update",
                                                  payload_types=["pit.events.v1.NAVUpdateEvent"]))
    with pytest.raises(ConfigError) as exc:
        check_app_against_catalog(_app(), str(path))
    assert "dead-letter topic pit.v1.ops.dead_letter is not in the catalog" in str(exc.value)
    assert "changelog topic pit.v1.runtime.nav_consumer_changelog is not in the catalog" in str(exc.value)


def test_changelog_needs_as_many_partitions_as_the_sources(tmp_path: Path) -> None:
    catalog = yaml.safe_load(REPO_CATALOG.read_text())
    for item in catalog["topics"]:
        if item["name"] == "pit.v1.runtime.nav_consumer_changelog":
            item["partitions"] = 4
    path = tmp_path / "topics.yaml"
    path.write_text(yaml.safe_dump(catalog))
    with pytest.raises(ConfigError, match=r"has 4 partitions but pit.v1.exec.trade_fill has 8"):
        check_app_against_catalog(_app(), str(path))


def test_catalog_path_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(CATALOG_ENV, raising=False)
    with pytest.raises(ConfigError, match=r"topic catalog infra/topics.yaml not found .*set PIT_CATALOG"):
        check_app_against_catalog(_app(), None)
    monkeypatch.setenv(CATALOG_ENV, str(REPO_CATALOG))
    check_app_against_catalog(_app(), None)
    monkeypatch.delenv(CATALOG_ENV)
    (tmp_path / "infra").mkdir()
    (tmp_path / "infra" / "topics.yaml").write_text(REPO_CATALOG.read_text())
    check_app_against_catalog(_app(), None)


def test_worker_cli_refuses_an_uncatalogued_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    module = tmp_path / "rogue_app.py"
    module.write_text(
        "import pit_streams\n"
        "from pit.events.v1.events_pb2 import TradeFillEvent\n"
        "app = pit_streams.App('rogue')\n"
        "@app.handler('pit.v1.exec.example_rogue_fills', TradeFillEvent)\n"
        "def on(fill, ctx):\n    pass\n"
    )
    monkeypatch.chdir(tmp_path)
    code = main(["worker", "-A", "rogue_app", "--broker", "127.0.0.1:1", "--catalog", str(REPO_CATALOG)])
    err = capsys.readouterr().err
    assert code == 2
    assert "handler topic pit.v1.exec.example_rogue_fills is not in the catalog" in err
    assert "run 'pit-streams topics apply'" in err


# --------------------------------------------------------------------------- topics apply


@pytest.mark.kafka
def test_topics_apply_creates_reports_drift_and_is_idempotent(
    kafka_bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from confluent_kafka.admin import AdminClient
    from kafka_support import create_topic

    suffix = uuid.uuid4().hex[:10]
    fills = f"pit.v1.exec.apply_test_{suffix}"
    state = f"pit.v1.runtime.apply_test_{suffix}_changelog"
    drifted = f"pit.v1.acct.apply_test_{suffix}"
    path = write_catalog(
        tmp_path,
        entry(name=fills),
        entry(name=state, kind="state", cleanup_policy="compact",
              payload_types=list(CHANGELOG_PAYLOAD_TYPES),
              config={"delete.retention.ms": "3600000"}),
        entry(name=drifted, payload_types=["pit.events.v1.NAVUpdateEvent"]),
    )
    create_topic(kafka_bootstrap, drifted, partitions=2)  # made by hand, not as catalogued
    args = ["topics", "apply", "--broker", kafka_bootstrap, "--catalog", str(path)]

    # Production replication on a one-broker cluster: refused, naming the flag.
    assert main(args) == 2
    assert "pass --replicas-override 1" in capsys.readouterr().err

    assert main([*args, "--replicas-override", "1"]) == 1  # created two, one drifted
    out = capsys.readouterr().out
    assert f"created   {fills} (8 partitions, 1 replica(s), cleanup.policy=delete)" in out
    assert f"created   {state}" in out
    assert f"drift     {drifted}: partitions 2 (catalog 8), retention.ms=86400000 (catalog -1)" in out

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    md = admin.list_topics(timeout=10)
    assert len(md.topics[fills].partitions) == 8 and len(md.topics[drifted].partitions) == 2  # not changed
    from confluent_kafka.admin import ConfigResource, ResourceType  # type: ignore[attr-defined]

    [future] = admin.describe_configs([ConfigResource(ResourceType.TOPIC, state)]).values()
    config = future.result(timeout=10)
    assert config["cleanup.policy"].value == "compact"
    assert config["delete.retention.ms"].value == "3600000"
    assert config["min.insync.replicas"].value == "1"  # capped at the override

    assert main([*args, "--replicas-override", "1"]) == 1  # idempotent: nothing created again
    out = capsys.readouterr().out
    assert "created" not in out.replace("0 created", "")
    assert f"ok        {fills}" in out and f"ok        {state}" in out


# --------------------------------------------------------------------------- ownership (issue 10, item 7)


def test_emitting_to_a_topic_another_app_owns_refuses_to_start() -> None:
    rogue = _app(name="rogue-app")  # emits pit.v1.acct.nav_update, owned by nav-consumer
    with pytest.raises(ConfigError) as exc:
        check_app_against_catalog(rogue, str(REPO_CATALOG))
    message = str(exc.value)
    assert "\n" not in message
    assert "emits to pit.v1.acct.nav_update, which the catalog says 'nav-consumer' owns" in message
    check_app_against_catalog(_app(name="nav-consumer"), str(REPO_CATALOG))  # the owner may


def test_the_framework_topics_are_allowed_without_being_owned() -> None:
    """Dead letters (owner pit-streams) and the app's changelog are written on the app's behalf."""
    app = _app(name="nav-consumer")
    assert pit_streams.DEAD_LETTER_TOPIC in app.writes() and app.changelog_topic in app.writes()
    check_app_against_catalog(app, str(REPO_CATALOG))


def test_a_handler_on_the_dead_letter_topic_is_a_declaration_error() -> None:
    with pytest.raises(DeclarationError, match="feed its own refusals back to itself"):
        _app(topic=pit_streams.DEAD_LETTER_TOPIC)


@pytest.mark.parametrize("out", [pit_streams.DEAD_LETTER_TOPIC, "pit.v1.runtime.nav_consumer_changelog",
                                 "pit.v1.runtime.someone_else_changelog"])
def test_declaring_a_framework_topic_as_an_output_is_a_declaration_error(out: str) -> None:
    with pytest.raises(DeclarationError, match=f"{out} is written by the framework, not by handlers"):
        _app(name="other-app", emits={out: NAVUpdateEvent})


def test_derived_acls_write_only_own_outputs_and_framework_topics() -> None:
    from pit_streams.acl import access_of

    access = access_of(_app(name="nav-consumer"))
    assert set(access.writes) == {"pit.v1.acct.nav_update", pit_streams.DEAD_LETTER_TOPIC,
                                  "pit.v1.runtime.nav_consumer_changelog"}


def test_a_typo_of_a_catalogued_topic_suggests_the_right_name() -> None:
    with pytest.raises(ConfigError) as exc:
        check_app_against_catalog(_app(topic="pit.v1.exec.trade_fills"), str(REPO_CATALOG))
    assert "handler topic pit.v1.exec.trade_fills is not in the catalog (did you mean pit.v1.exec.trade_fill?)" in str(
        exc.value)


def test_a_new_name_gets_no_suggestion() -> None:
    with pytest.raises(ConfigError) as exc:
        check_app_against_catalog(_app(emits={"pit.v1.risk.example_not_in_catalog": ExposureSnapshotEvent}),
                                  str(REPO_CATALOG))
    assert "did you mean" not in str(exc.value)
