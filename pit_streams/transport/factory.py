"""Choose a transport by name (``confluent`` — the default — or ``aiokafka``)."""

from __future__ import annotations

import ipaddress
import os

from pit_streams.errors import ConfigError
from pit_streams.security import TLS_DIR_ENV, TlsFiles
from pit_streams.transport.base import Transport

BOOTSTRAP_ENV = "PIT_KAFKA_BOOTSTRAP"
TRANSPORTS = ("confluent", "aiokafka")
ALLOW_PLAINTEXT_ENV = "PIT_KAFKA_ALLOW_PLAINTEXT"


def resolve_bootstrap(broker: str | None) -> str:
    bootstrap = broker or os.environ.get(BOOTSTRAP_ENV)
    if not bootstrap:
        raise ConfigError(f"no Kafka broker given: pass --broker host:port or set {BOOTSTRAP_ENV}")
    return bootstrap


def _host_of(address: str) -> str:
    address = address.strip().split("://", 1)[-1]
    if address.startswith("["):  # [::1]:9092
        return address[1:].split("]", 1)[0]
    if address.count(":") > 1:  # a bare IPv6 address
        return address
    return address.rsplit(":", 1)[0] if ":" in address else address


def is_loopback(address: str) -> bool:
    """``host:port`` names this machine: 127.0.0.0/8, ::1 or localhost."""
    host = _host_of(address).lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_plaintext(bootstrap: str, tls: TlsFiles | None, allow_plaintext: bool | None = None) -> None:
    """Refuse plaintext to a broker off this machine unless explicitly allowed (contract 4.1: mutual TLS)."""
    if tls is not None:
        return
    if allow_plaintext is None:
        allow_plaintext = os.environ.get(ALLOW_PLAINTEXT_ENV, "") in ("1", "true", "yes")
    if allow_plaintext:
        return
    remote = [a.strip() for a in bootstrap.split(",") if a.strip() and not is_loopback(a)]
    if remote:
        raise ConfigError(
            f"refusing plaintext Kafka to {', '.join(remote)}: set {TLS_DIR_ENV} to the mounted KafkaUser"
            f" certificates (mutual TLS), or pass --allow-plaintext / set {ALLOW_PLAINTEXT_ENV}=1 on purpose"
        )


def make_transport(kind: str, broker: str | None, *, client_id: str = "pit-streams",
                   allow_plaintext: bool | None = None) -> Transport:
    """The named transport to ``broker`` (or ``$PIT_KAFKA_BOOTSTRAP``), with mutual TLS from
    ``$PIT_KAFKA_TLS_DIR``. Without TLS only loopback brokers are accepted unless ``allow_plaintext``
    (default: ``$PIT_KAFKA_ALLOW_PLAINTEXT``)."""
    bootstrap = resolve_bootstrap(broker)
    tls = TlsFiles.from_env()
    check_plaintext(bootstrap, tls, allow_plaintext)
    if kind == "confluent":
        from pit_streams.transport.confluent import ConfluentTransport

        return ConfluentTransport(bootstrap, tls=tls, client_id=client_id)
    if kind == "aiokafka":
        from pit_streams.transport.aiokafka import AiokafkaTransport

        return AiokafkaTransport(bootstrap, tls=tls, client_id=client_id)
    raise ConfigError(f"unknown transport {kind!r}: choose one of {', '.join(TRANSPORTS)}")
