"""Least-privilege ACLs from declarations, the committed k8s/ manifests (drift and structure), and
the image (Dockerfile + a wheel installed into a clean virtualenv)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import venv
from pathlib import Path
from typing import Any

import pytest
import yaml
from pit.events.v1.events_pb2 import NAVUpdateEvent, TradeFillEvent

import pit_streams
from pit_streams.acl import AclRule, ProducerSpec, access_of, kafka_user
from pit_streams.catalog import load_catalog
from pit_streams.cli import main
from pit_streams.errors import ConfigError, DeclarationError
from pit_streams.k8s import (
    DATA_DIR,
    GENERATED,
    HEALTH_PORT,
    IMAGE_CMD,
    IMAGE_ENTRYPOINT,
    OUT_OF_DATE,
    TLS_DIR,
    RenderSettings,
    render,
    stale_files,
    write_rendered,
)
from pit_streams.loader import discover_declared, load_declared

REPO_ROOT = Path(__file__).resolve().parent.parent
K8S_DIR = REPO_ROOT / "k8s"
CATALOG = REPO_ROOT / "infra" / "topics.yaml"


@pytest.fixture
def in_repo(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Apps are imported as ``apps.<module>`` from the repository root, as the CLI does."""
    monkeypatch.chdir(REPO_ROOT)
    return REPO_ROOT


def assert_k8s_up_to_date(catalog: Path, out_dir: Path) -> None:
    """The CI drift check: a fresh render of the catalog and apps/ equals what is committed."""
    files = render(load_catalog(catalog), discover_declared(REPO_ROOT / "apps"))
    stale = stale_files(files, out_dir)
    assert not stale, f"{OUT_OF_DATE} (differs: {', '.join(stale)})"


def manifests(directory: Path) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(directory.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                out.append((path.relative_to(directory).as_posix(), doc))
    return out


# --------------------------------------------------------------------------- ACLs


def nav_like_app() -> pit_streams.App:
    app = pit_streams.App("nav-consumer")

    @app.handler("pit.v1.exec.trade_fill", TradeFillEvent, emits={"pit.v1.acct.nav_update": NAVUpdateEvent})
    def on_fill(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
        return None

    return app


def test_app_access_is_exactly_what_it_declares() -> None:
    access = access_of(nav_like_app())
    assert access.principal == "User:CN=nav-consumer"
    assert access.rules() == [
        AclRule("topic", "pit.v1.acct.nav_update", ("Describe", "Write")),
        AclRule("topic", "pit.v1.exec.trade_fill", ("Describe", "Read")),
        AclRule("topic", "pit.v1.ops.dead_letter", ("Describe", "Write")),
        # written at every checkpoint, read back to restore state on assignment
        AclRule("topic", "pit.v1.runtime.nav_consumer_changelog", ("Describe", "Read", "Write")),
        AclRule("group", "nav-consumer", ("Read",)),
        # checkpoints are transactions; a worker's id is the group's name and a suffix
        AclRule("transactionalId", "nav-consumer-", ("Describe", "Write"), prefixed=True),
        AclRule("cluster", "kafka-cluster", ("IdempotentWrite",)),
    ]


def test_producer_spec_access_has_no_group_and_no_reads() -> None:
    spec = ProducerSpec(name="tradefill-producer", writes=["pit.v1.exec.trade_fill"])
    assert access_of(spec).rules() == [
        AclRule("topic", "pit.v1.exec.trade_fill", ("Describe", "Write")),
        AclRule("cluster", "kafka-cluster", ("IdempotentWrite",)),
    ]
    with pytest.raises(DeclarationError, match="lower-case"):
        ProducerSpec(name="Trade_Fill", writes=["pit.v1.exec.trade_fill"])
    with pytest.raises(DeclarationError, match="does not follow"):
        ProducerSpec(name="tradefill-producer", writes=["fills"])
    with pytest.raises(DeclarationError, match="at least one topic"):
        ProducerSpec(name="tradefill-producer", writes=[])


def test_kafka_user_manifest() -> None:
    user = kafka_user(access_of(nav_like_app()), cluster="pit-kafka")
    assert (user["apiVersion"], user["kind"], user["metadata"]["name"]) == (
        "kafka.strimzi.io/v1beta2", "KafkaUser", "nav-consumer")
    assert user["metadata"]["labels"]["strimzi.io/cluster"] == "pit-kafka"
    assert user["spec"]["authentication"] == {"type": "tls"}
    acls = user["spec"]["authorization"]["acls"]
    assert user["spec"]["authorization"]["type"] == "simple"
    assert {"resource": {"type": "group", "name": "nav-consumer", "patternType": "literal"},
            "operations": ["Read"], "host": "*"} in acls
    assert {"resource": {"type": "cluster"}, "operations": ["IdempotentWrite"], "host": "*"} in acls


def test_acl_cli_text_and_yaml(in_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["acl", "-A", "apps.nav"]) == 0
    text = capsys.readouterr().out
    assert "principal User:CN=nav-consumer" in text
    assert re.search(r"topic\s+pit\.v1\.exec\.trade_fill\s+Describe, Read", text)
    assert re.search(r"consumer group\s+nav-consumer\s+Read", text)

    assert main(["acl", "-A", "apps.nav", "--format", "yaml"]) == 0
    [user] = list(yaml.safe_load_all(capsys.readouterr().out))
    assert user == kafka_user(access_of(load_declared("apps.nav").target))


def test_acl_cli_refuses_a_module_without_declarations(in_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["acl", "-A", "apps.nav_math"]) == 2
    assert "must define exactly one pit_streams.App or ProducerSpec" in capsys.readouterr().err


# --------------------------------------------------------------------------- k8s/: drift


def test_k8s_manifests_are_up_to_date(in_repo: Path) -> None:
    assert_k8s_up_to_date(CATALOG, K8S_DIR)


def test_editing_the_catalog_without_rendering_fails_the_drift_check(
    in_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    committed = tmp_path / "k8s"
    shutil.copytree(K8S_DIR, committed)
    catalog = tmp_path / "topics.yaml"
    catalog.write_text(CATALOG.read_text().replace("partitions: 3", "partitions: 6", 1))  # the DLQ grows

    with pytest.raises(AssertionError) as drift:
        assert_k8s_up_to_date(catalog, committed)
    assert "k8s/ is out of date with infra/topics.yaml or apps/: run 'pit-streams k8s render' (make k8s)" in str(
        drift.value)
    assert "topics.yaml" in str(drift.value)

    args = ["k8s", "render", "--catalog", str(catalog), "--out", str(committed)]
    assert main([*args, "--check"]) == 1
    assert "run 'pit-streams k8s render' (make k8s)" in capsys.readouterr().err
    assert main(args) == 0  # re-render ...
    assert main([*args, "--check"]) == 0  # ... and it is up to date
    assert "partitions: 6" in (committed / "topics.yaml").read_text()


def test_render_is_deterministic_and_removes_what_is_no_longer_rendered(in_repo: Path, tmp_path: Path) -> None:
    declared = discover_declared(REPO_ROOT / "apps")
    first = render(load_catalog(CATALOG), declared)
    assert first == render(load_catalog(CATALOG), list(reversed(declared)))
    write_rendered(first, tmp_path)
    (tmp_path / "apps" / "retired-app.yaml").write_text(f"{GENERATED}\n---\n{{}}\n")
    (tmp_path / "hand-written.yaml").write_text("kind: ConfigMap\n")  # not generated: left alone
    assert stale_files(first, tmp_path) == ["apps/retired-app.yaml"]
    assert write_rendered(first, tmp_path) == ["apps/retired-app.yaml"]
    assert not (tmp_path / "apps" / "retired-app.yaml").exists() and (tmp_path / "hand-written.yaml").exists()


def test_render_refuses_an_app_using_uncatalogued_topics(tmp_path: Path) -> None:
    app = pit_streams.App("rogue")

    @app.handler("pit.v1.exec.example_rogue_fills", TradeFillEvent)
    def on(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
        return None

    from pit_streams.loader import Declared

    with pytest.raises(ConfigError, match=r"handler topic pit.v1.exec.example_rogue_fills is not in the catalog"):
        render(load_catalog(CATALOG), [Declared("rogue_module", app)])
    producer = ProducerSpec(name="rogue-producer", writes=["pit.v1.exec.example_rogue_fills"])
    with pytest.raises(ConfigError, match=r"uses pit.v1.exec.example_rogue_fills, not in the topic catalog"):
        render(load_catalog(CATALOG), [Declared("rogue_module", producer)])


# --------------------------------------------------------------------------- k8s/: structure


def test_every_manifest_is_well_formed() -> None:
    docs = manifests(K8S_DIR)
    assert docs
    names: set[tuple[str, str]] = set()
    for path, doc in docs:
        assert isinstance(doc.get("apiVersion"), str) and isinstance(doc.get("kind"), str), path
        name = doc.get("metadata", {}).get("name")
        assert isinstance(name, str) and re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name), (path, name)
        assert (doc["kind"], name) not in names, f"duplicate {doc['kind']} {name}"
        names.add((doc["kind"], name))
    assert all(p.read_text().startswith(GENERATED) for p in K8S_DIR.rglob("*.yaml"))


def test_cluster_is_tls_only_with_simple_authorization() -> None:
    by_kind = {d["kind"]: d for _, d in manifests(K8S_DIR) if d["kind"] in ("Kafka", "KafkaNodePool")}
    kafka = by_kind["Kafka"]
    assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
    assert [(li["tls"], li["authentication"]["type"]) for li in kafka["spec"]["kafka"]["listeners"]] == [(True, "tls")]
    assert kafka["spec"]["kafka"]["authorization"]["type"] == "simple"
    assert kafka["spec"]["kafka"]["config"]["auto.create.topics.enable"] is False
    pool = by_kind["KafkaNodePool"]
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    assert set(pool["spec"]["roles"]) == {"controller", "broker"}


def test_one_kafka_topic_per_catalog_entry() -> None:
    topics = {d["spec"]["topicName"]: d for _, d in manifests(K8S_DIR) if d["kind"] == "KafkaTopic"}
    catalog = load_catalog(CATALOG)
    assert sorted(topics) == sorted(catalog.names())
    for spec in catalog:
        doc = topics[spec.name]
        assert doc["metadata"]["labels"]["strimzi.io/cluster"] == RenderSettings().cluster
        assert (doc["spec"]["partitions"], doc["spec"]["replicas"]) == (spec.partitions, spec.replicas)
        assert doc["spec"]["config"]["cleanup.policy"] == spec.cleanup_policy
        assert doc["spec"]["config"]["retention.ms"] == str(spec.retention_ms)


def test_one_kafka_user_per_service_and_one_deployment_per_consumer_group(in_repo: Path) -> None:
    docs = manifests(K8S_DIR)
    users = {d["metadata"]["name"]: d for _, d in docs if d["kind"] == "KafkaUser"}
    deployments = {d["metadata"]["name"]: d for _, d in docs if d["kind"] == "Deployment"}
    declared = discover_declared(REPO_ROOT / "apps")
    apps = {d.name: d for d in declared if isinstance(d.target, pit_streams.App)}
    assert set(users) == {d.name for d in declared}
    assert set(deployments) == set(apps)
    for user in users.values():
        assert user["spec"]["authentication"]["type"] == "tls"
        assert user["spec"]["authorization"]["type"] == "simple" and user["spec"]["authorization"]["acls"]
    for name, deployment in deployments.items():
        check_deployment(deployment, apps[name].spec)


def check_deployment(d: dict[str, Any], module: str) -> None:
    assert d["apiVersion"] == "apps/v1"
    spec, template = d["spec"], d["spec"]["template"]
    labels = template["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    pod = template["spec"]
    [container] = pod["containers"]
    assert container["image"] and container["name"]
    assert "command" not in container  # the image's ENTRYPOINT runs
    assert container["args"] == [*IMAGE_CMD, "-A", module]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["PIT_KAFKA_TLS_DIR"] == TLS_DIR and env["PIT_DATA_DIR"] == DATA_DIR
    assert env["PIT_KAFKA_BOOTSTRAP"].endswith(":9093")
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert [p["containerPort"] for p in container["ports"]] == [HEALTH_PORT]
    annotations = template["metadata"]["annotations"]
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": str(HEALTH_PORT),
                           "prometheus.io/path": "/metrics"}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert pod["terminationGracePeriodSeconds"] >= 30
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["kafka-tls"] == TLS_DIR and mounts["pit-data"] == DATA_DIR
    assert "emptyDir" in volumes["pit-data"]
    files = {
        (source["secret"]["name"], item["key"], item["path"])
        for source in volumes["kafka-tls"]["projected"]["sources"]
        for item in source["secret"]["items"]
    }
    # The layout pit_streams.security.TlsFiles reads: the KafkaUser's cert + key, the cluster CA.
    user = d["metadata"]["name"]
    assert files == {(user, "user.crt", "user.crt"), (user, "user.key", "user.key"),
                     ("pit-kafka-cluster-ca-cert", "ca.crt", "ca.crt")}


# --------------------------------------------------------------------------- the image


def dockerfile_final_stage() -> list[str]:
    lines = (REPO_ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    instructions = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    last_from = max(i for i, line in enumerate(instructions) if line.upper().startswith("FROM "))
    return instructions[last_from:]


def test_dockerfile_bakes_in_no_secret_material() -> None:
    text = (REPO_ROOT / "Dockerfile").read_text()
    copies = [line for line in text.splitlines() if re.match(r"\s*(COPY|ADD)\b", line, re.IGNORECASE)]
    assert copies
    for line in copies:
        assert not re.search(r"\.(pem|key|crt|p12|jks)\b|ssl|tls|secret|cert", line, re.IGNORECASE), line
        assert not re.search(r"COPY\s+\.\s", line), f"copies the whole context: {line}"
    assert not re.search(r"^\s*(ENV|ARG)\s+.*(PASSWORD|SECRET|TOKEN|_KEY=)", text, re.MULTILINE | re.IGNORECASE)
    ignore = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*")] == "*"  # an allow-list
    for pattern in ("**/*.pem", "**/*.key", "**/*.crt"):
        assert pattern in ignore


def test_image_runs_as_non_root_with_the_deployments_entrypoint(in_repo: Path) -> None:
    final = dockerfile_final_stage()
    users = [line.split(None, 1)[1] for line in final if line.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    [entrypoint] = [json.loads(line.split(None, 1)[1]) for line in final if line.upper().startswith("ENTRYPOINT ")]
    [cmd] = [json.loads(line.split(None, 1)[1]) for line in final if line.upper().startswith("CMD ")]
    assert tuple(entrypoint) == IMAGE_ENTRYPOINT and tuple(cmd) == IMAGE_CMD
    assert any(re.match(r"COPY\s+apps/\s", line) for line in final)
    assert any(re.match(r"COPY\s+infra/topics\.yaml\s", line) for line in final)
    env = " ".join(line for line in final if line.upper().startswith("ENV "))
    assert "PIT_CATALOG=/app/infra/topics.yaml" in env and "WORKDIR /app" in final
    for _, doc in manifests(K8S_DIR):
        if doc["kind"] == "Deployment":
            [container] = doc["spec"]["template"]["spec"]["containers"]
            assert container["args"][: len(cmd)] == cmd
            assert doc["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(users[-1].split(":")[0])


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_wheel_installs_into_a_clean_virtualenv_with_the_locked_dependencies(tmp_path: Path) -> None:
    """What the Dockerfile's builder does, without Docker: build the wheel from exactly the files
    the builder copies, install it with the pinned dependencies, run the CLI."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "requirements.lock"):
        shutil.copy2(REPO_ROOT / name, src / name)
    shutil.copytree(REPO_ROOT / "pit_streams", src / "pit_streams", ignore=shutil.ignore_patterns("__pycache__"))
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    py = env_dir / "bin" / "python"
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}

    def run(*args: str | Path) -> str:
        res = subprocess.run([str(a) for a in args], cwd=tmp_path, env=clean_env, capture_output=True,
                             text=True, timeout=540, check=False)
        assert res.returncode == 0, f"{' '.join(map(str, args))} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
        return res.stdout

    run(py, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", tmp_path / "dist", src)
    [wheel] = (tmp_path / "dist").glob("pit_streams-*.whl")
    run(py, "-m", "pip", "install", "--constraint", src / "requirements.lock", wheel)
    help_text = run(env_dir / "bin" / "pit-streams", "--help")
    for command in ("worker", "topics", "acl", "k8s"):
        assert command in help_text
    frozen = run(py, "-m", "pip", "freeze", "--exclude", "pit-streams", "--exclude", "pip")
    installed = {re.sub(r"[-_.]+", "-", n).lower(): v for n, _, v in
                 (line.partition("==") for line in frozen.splitlines() if "==" in line)}
    assert installed == lock_pins(), "requirements.lock is stale: regenerate it (see its header)"


def test_lock_was_resolved_for_the_images_python() -> None:
    image = re.search(r"ARG PYTHON_IMAGE=python:(\d+\.\d+)", (REPO_ROOT / "Dockerfile").read_text())
    lock = re.search(r"Resolved with Python (\d+\.\d+)", (REPO_ROOT / "requirements.lock").read_text())
    assert image and lock and image.group(1) == lock.group(1), (
        "requirements.lock's pins hold for one Python minor version: the image must use the same")
