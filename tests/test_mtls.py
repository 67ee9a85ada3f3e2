"""Mutual TLS and least privilege against a real broker (contract 4.1, 4.2).

A second, private Kafka broker is started with an SSL listener that requires client
certificates, KRaft's ``StandardAuthorizer`` and ``allow.everyone.if.no.acl.found=false``.
A throw-away CA and certificates are made under tmp_path (nothing is committed). The ACLs are
exactly the ones ``pit_streams.acl`` derives from the declarations, created by a super user.

Shown here:
- a worker, with its own certificate mounted as Strimzi does (``PIT_KAFKA_TLS_DIR``), consumes
  an enveloped fill, emits a NAV update and commits; restarted with an empty data dir, it restores
  its state from the changelog (the restore reader uses the app's own group id, as the
  derived ACLs allow);
- a client without a certificate cannot connect at all;
- a principal without an ACL for a topic is refused (TOPIC_AUTHORIZATION_FAILED);
- the worker itself is refused a topic, and a consumer group, it never declared.

The broker keeps the PLAINTEXT listener on loopback that kafka.sh probes for readiness; the
controller listener is PLAINTEXT on loopback too, which is why ``User:ANONYMOUS`` (the broker
talking to its own controller) is a super user. Every client here uses the SSL listener.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import ipaddress
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from google.protobuf.timestamp_pb2 import Timestamp
from kafka_support import BrokerHandle, free_port, start_broker
from pit.envelope.v1.envelope_pb2 import EventEnvelope
from pit.events.v1.events_pb2 import NAVUpdateEvent, TradeFillEvent

import pit_streams
from pit_streams.acl import ProducerSpec, access_of, acl_bindings
from pit_streams.catalog import TopicSpec, apply_catalog, load_catalog
from pit_streams.runtime.worker import Worker, WorkerSettings
from pit_streams.security import TLS_DIR_ENV, TlsFiles
from pit_streams.transport.base import DeliveryError
from pit_streams.transport.confluent import ConfluentTransport
from pit_streams.transport.factory import make_transport

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402

pytestmark = pytest.mark.kafka

REPO_ROOT = Path(__file__).resolve().parent.parent
FILLS = "pit.v1.exec.trade_fill"
NAV = "pit.v1.acct.nav_update"
UNDECLARED = "pit.v1.risk.example_undeclared"
ADMIN_CN = "pit-admin"
APP_NAME = "mtls-worker"
RESTORE_APP = "mtls-restore"  # its own principal, group and changelog: independent of test order
PRODUCER = ProducerSpec(name="mtls-producer", writes=[FILLS])
KEY = "t/demo/s/alpha/c/0001"
KEY_B = "t/demo/s/alpha/c/0002"


def build_app(name: str = APP_NAME) -> pit_streams.App:
    app = pit_streams.App(name, version="0.0.1")

    @app.handler(FILLS, TradeFillEvent, emits={NAV: NAVUpdateEvent})
    def on_fill(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
        total = ctx.state.get("notional") + fill.notional_usd_micros
        ctx.state.put("notional", total)
        ctx.emit(NAV, NAVUpdateEvent(nav_usd_micros=total))

    return app


# --------------------------------------------------------------------------- a throw-away PKI


@dataclass
class Pki:
    root: Path
    ca_key: rsa.RSAPrivateKey
    ca_cert: x509.Certificate

    @property
    def ca_file(self) -> Path:
        return self.root / "ca.crt"

    @classmethod
    def create(cls, root: Path) -> Pki:
        root.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pit-test-ca")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                              key_encipherment=False, data_encipherment=False, key_agreement=False,
                              encipher_only=False, decipher_only=False),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        pki = cls(root, key, cert)
        pki.ca_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return pki

    def issue(self, cn: str, *, server: bool = False) -> tuple[bytes, bytes]:
        """(certificate PEM, unencrypted PKCS#8 key PEM) for ``CN=cn``, signed by the CA."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = dt.datetime.now(dt.UTC)
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if server else [])
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        cert = builder.sign(self.ca_key, hashes.SHA256())
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return cert.public_bytes(serialization.Encoding.PEM), key_pem

    def user_dir(self, cn: str) -> Path:
        """A directory laid out like the Strimzi mount the worker reads: ca.crt, user.crt, user.key."""
        directory = self.root / cn
        directory.mkdir()
        cert, key = self.issue(cn)
        (directory / "ca.crt").write_bytes(self.ca_file.read_bytes())
        (directory / "user.crt").write_bytes(cert)
        (directory / "user.key").write_bytes(key)
        (directory / "user.key").chmod(0o600)
        return directory


# --------------------------------------------------------------------------- the secured broker


@dataclass
class SecureCluster:
    broker: BrokerHandle
    bootstrap: str  # the SSL listener
    pki: Pki
    dirs: dict[str, Path]

    def client_config(self, cn: str) -> dict[str, Any]:
        return {"bootstrap.servers": self.bootstrap, **TlsFiles.from_dir(self.dirs[cn]).librdkafka()}

    def admin(self) -> AdminClient:
        return AdminClient(self.client_config(ADMIN_CN))


def _broker_props(pki: Pki, port: int, ssl_port: int, controller_port: int) -> str:
    cert, key = pki.issue("localhost", server=True)
    keystore = pki.root / "broker-keystore.pem"
    keystore.write_bytes(key + cert + pki.ca_file.read_bytes())
    keystore.chmod(0o600)
    return "\n".join(
        [
            f"listeners=PLAINTEXT://127.0.0.1:{port},SSL://127.0.0.1:{ssl_port},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port},SSL://127.0.0.1:{ssl_port}",
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={keystore}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={pki.ca_file}",
            "ssl.client.auth=required",
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found=false",
            f"super.users=User:ANONYMOUS;User:CN={ADMIN_CN}",
        ]
    )


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureCluster]:
    root = tmp_path_factory.mktemp("mtls")
    pki = Pki.create(root / "pki")
    port, ssl_port, controller_port = free_port(), free_port(), free_port()
    while len({port, ssl_port, controller_port}) < 3:
        ssl_port, controller_port = free_port(), free_port()
    broker = start_broker(root / "kafka", _broker_props(pki, port, ssl_port, controller_port),
                          port=port, controller_port=controller_port)
    try:
        dirs = {cn: pki.user_dir(cn) for cn in (ADMIN_CN, APP_NAME, RESTORE_APP, PRODUCER.name, "outsider")}
        cluster = SecureCluster(broker, f"127.0.0.1:{ssl_port}", pki, dirs)
        _provision(cluster)
        yield cluster
    finally:
        broker.stop()


def _provision(cluster: SecureCluster) -> None:
    """As the super user: the catalogued topics (via ``topics apply``) and the derived ACLs."""
    apps = [build_app(APP_NAME), build_app(RESTORE_APP)]
    repo = load_catalog(REPO_ROOT / "infra" / "topics.yaml")
    template = repo.get("pit.v1.runtime.nav_consumer_changelog")
    assert template is not None
    changelogs = [dataclasses.replace(template, name=a.changelog_topic, owner=a.name) for a in apps]
    undeclared = TopicSpec(UNDECLARED, "audit", ("pit.events.v1.ExposureSnapshotEvent",), 1, 1, 1, "delete", -1,
                           "test", "a topic the worker never declared")
    catalog = dataclasses.replace(repo, topics=(*repo.topics, *changelogs, undeclared))
    admin = cluster.admin()
    report = apply_catalog(catalog, admin, replicas_override=1, echo=lambda _line: None)
    assert report.ok and len(report.created) == len(catalog.topics), report
    again = apply_catalog(catalog, admin, replicas_override=1, echo=lambda _line: None)
    assert not again.created and len(again.unchanged) == len(catalog.topics), again  # idempotent

    targets: list[pit_streams.App | ProducerSpec] = [*apps, PRODUCER]
    bindings = [b for target in targets for b in acl_bindings(access_of(target))]
    for future in admin.create_acls(bindings, request_timeout=30).values():
        future.result(timeout=30)
    _wait_for_acls(admin, len(bindings))


def _wait_for_acls(admin: AdminClient, expected: int, timeout: float = 30) -> None:
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    match_all = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,  # type: ignore[arg-type]
                                 AclOperation.ANY, AclPermissionType.ANY)
    deadline = time.monotonic() + timeout
    while True:
        found = admin.describe_acls(match_all, request_timeout=timeout).result(timeout=timeout)
        if len(found) >= expected or time.monotonic() > deadline:
            assert len(found) >= expected, found
            return
        time.sleep(0.2)


def _fill(n: int) -> TradeFillEvent:
    return TradeFillEvent(instrument="BTC-USD", qty=1, price_micros=60_000_000_000 + n,
                          notional_usd_micros=60_000_000_000 + n)


async def _produce_fill(cluster: SecureCluster, event_id: str, n: int = 0, key: str = KEY) -> None:
    transport = ConfluentTransport(cluster.bootstrap, tls=TlsFiles.from_dir(cluster.dirs[PRODUCER.name]),
                                   client_id="mtls-producer@0.0.1")
    producer = pit_streams.Producer(PRODUCER.name, version="0.0.1", transport=transport)
    async with producer:
        # A fixed event time: a redelivery carries the very same payload (same id, same bytes).
        producer.send(FILLS, _fill(n), key=key, event_id=event_id, ts=Timestamp(seconds=1_800_000_000 + n))
        await producer.flush()


async def _run_worker_until_idle(worker: Worker, handled: int, limit_s: float = 60) -> None:
    """Until at least ``handled`` records were processed or deduplicated and a poll came back empty."""
    deadline = time.monotonic() + limit_s
    while True:
        assert time.monotonic() < deadline, f"worker did not get there in {limit_s}s: {worker.metrics}"
        got = await worker.run_once()
        if not got and worker.metrics.processed + worker.metrics.deduped >= handled:
            return


def _consume(config: dict[str, Any], topic: str, expected: int, timeout: float = 30,
             group: str | None = None) -> list[Any]:
    consumer = Consumer({**config, "group.id": group or f"{ADMIN_CN}-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    out: list[Any] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout
        while len(out) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error() is not None:
                raise KafkaException(msg.error())
            out.append(msg)
    finally:
        consumer.close()
    return out


# --------------------------------------------------------------------------- the tests


def _nav_caused_by(cluster: SecureCluster, event_id: str, key: str = KEY, timeout: float = 30) -> NAVUpdateEvent:
    deadline = time.monotonic() + timeout
    while True:
        records = _consume(cluster.client_config(ADMIN_CN), NAV, 1_000, timeout=3)
        for record in records:
            env = EventEnvelope.FromString(record.value())
            if env.causation_id == event_id:
                assert env.payload_type == "pit.events.v1.NAVUpdateEvent" and env.key == key
                return NAVUpdateEvent.FromString(env.payload)
        assert time.monotonic() < deadline, f"no NAV update caused by {event_id}"


async def _run_worker(app: pit_streams.App, cluster: SecureCluster, data_dir: Path, handled: int) -> Worker:
    """Start a worker as the Deployment does (``PIT_KAFKA_TLS_DIR`` set, confluent transport),
    run it until it handled ``handled`` records and is idle, stop it."""
    worker = Worker(app, make_transport("confluent", cluster.bootstrap, client_id=app.producer),
                    WorkerSettings(data_dir))
    await worker.start()
    try:
        await _run_worker_until_idle(worker, handled)
    finally:
        await worker.stop()
    return worker


async def test_worker_with_its_own_certificate_consumes_emits_and_commits(
    secure: SecureCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TLS_DIR_ENV, str(secure.dirs[APP_NAME]))  # as the Deployment mounts it
    app = build_app(APP_NAME)
    event_id = str(uuid.uuid4())
    await _produce_fill(secure, event_id, 1)

    worker = await _run_worker(app, secure, tmp_path / "data", handled=1)

    assert worker.metrics.processed >= 1 and worker.metrics.commits >= 1
    assert sum(worker.metrics.rejected.values()) == 0
    nav = await asyncio.to_thread(_nav_caused_by, secure, event_id)
    assert nav.nav_usd_micros == _fill(1).notional_usd_micros


async def test_restarted_worker_restores_state_under_its_own_acls(
    secure: SecureCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TLS_DIR_ENV, str(secure.dirs[RESTORE_APP]))
    app = build_app(RESTORE_APP)
    first = str(uuid.uuid4())
    await _produce_fill(secure, first, 1, KEY_B)
    await _run_worker(app, secure, tmp_path / "pod-1", handled=1)

    # A new pod (empty data dir) restores state and dedupe marks from the changelog, which its
    # principal may read back: a redelivered fill is skipped, a new one adds up.
    await _produce_fill(secure, first, 1, KEY_B)
    second = str(uuid.uuid4())
    await _produce_fill(secure, second, 2, KEY_B)
    restarted = await _run_worker(app, secure, tmp_path / "pod-2", handled=2)

    assert restarted.metrics.restored_records > 0
    assert (restarted.metrics.processed, restarted.metrics.deduped) == (1, 1)
    nav = await asyncio.to_thread(_nav_caused_by, secure, second, KEY_B)
    assert nav.nav_usd_micros == _fill(1).notional_usd_micros + _fill(2).notional_usd_micros


def test_client_without_certificate_cannot_connect(secure: SecureCluster) -> None:
    errors: list[KafkaError] = []
    quiet = {"log_level": 0, "reconnect.backoff.ms": 500, "reconnect.backoff.max.ms": 1000}
    config: dict[str, Any] = {
        "bootstrap.servers": secure.bootstrap,
        "security.protocol": "SSL",
        "ssl.ca.location": str(secure.pki.ca_file),  # trusts the broker, presents no certificate
        "error_cb": errors.append,
        **quiet,
    }
    admin = AdminClient(config)
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)
    admin.poll(1)  # serve the error callbacks
    # The broker ends the handshake with a TLS alert: "bad certificate" (42) or, with TLS 1.3
    # on newer OpenSSL, "certificate required" (116).
    assert any("bad certificate" in e.str() or "certificate required" in e.str() for e in errors), errors

    plain = AdminClient({"bootstrap.servers": secure.bootstrap, "socket.timeout.ms": 3000, **quiet})
    with pytest.raises(KafkaException):
        plain.list_topics(timeout=5)


def _produce_error(config: dict[str, Any], topic: str) -> KafkaError | None:
    reports: list[KafkaError | None] = []
    producer = Producer({**config, "message.timeout.ms": 10_000, "enable.idempotence": False})
    producer.produce(topic, b"x", on_delivery=lambda err, _msg: reports.append(err))
    producer.flush(20)
    assert len(reports) == 1
    return reports[0]


def test_principal_without_acl_is_denied(secure: SecureCluster) -> None:
    # The outsider holds a valid certificate from the same CA, but no ACL at all.
    outsider = secure.client_config("outsider")
    err = _produce_error(outsider, FILLS)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    # The producer may write fills, but not NAV updates (it never declared them).
    producer = secure.client_config(PRODUCER.name)
    assert _produce_error(producer, FILLS) is None
    err = _produce_error(producer, NAV)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    with pytest.raises(KafkaException) as denied:
        _consume({**producer, "group.id": "x"}, FILLS, 1, timeout=10)
    assert denied.value.args[0].code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED,
                                           KafkaError.GROUP_AUTHORIZATION_FAILED), denied.value


async def test_worker_is_denied_what_it_never_declared(secure: SecureCluster) -> None:
    tls = TlsFiles.from_dir(secure.dirs[APP_NAME])
    transport = ConfluentTransport(secure.bootstrap, tls=tls, client_id="mtls-worker@0.0.1")
    await transport.start(None)
    try:
        transport.send(UNDECLARED, b"x", b"k", [])
        with pytest.raises(DeliveryError, match=r"(?i)authoriz"):
            await transport.flush()
        transport.send(NAV, b"allowed", b"k", [])  # a declared output still works
        await transport.flush()
    finally:
        await transport.stop()

    worker_cfg = secure.client_config(APP_NAME)
    with pytest.raises(KafkaException) as topic_denied:
        await asyncio.to_thread(_consume, worker_cfg, UNDECLARED, 1, 10, APP_NAME)
    assert topic_denied.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # Its own topics, but under a consumer group that is not its own.
    consumer = Consumer({**worker_cfg, "group.id": "someone-elses-group", "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe([FILLS])
        deadline = time.monotonic() + 15
        code = None
        while code is None and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            error = msg.error() if msg is not None else None
            if error is not None:
                code = error.code()
        assert code == KafkaError.GROUP_AUTHORIZATION_FAILED
    finally:
        consumer.close()
