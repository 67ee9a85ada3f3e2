"""Choose a transport by name (``confluent`` — the default — or ``aiokafka``)."""

from __future__ import annotations

import os

from pit_streams.errors import ConfigError
from pit_streams.security import TlsFiles
from pit_streams.transport.base import Transport

BOOTSTRAP_ENV = "PIT_KAFKA_BOOTSTRAP"
TRANSPORTS = ("confluent", "aiokafka")


def resolve_bootstrap(broker: str | None) -> str:
    bootstrap = broker or os.environ.get(BOOTSTRAP_ENV)
    if not bootstrap:
        raise ConfigError(f"no Kafka broker given: pass --broker host:port or set {BOOTSTRAP_ENV}")
    return bootstrap


def make_transport(kind: str, broker: str | None, *, client_id: str = "pit-streams") -> Transport:
    bootstrap = resolve_bootstrap(broker)
    tls = TlsFiles.from_env()
    if kind == "confluent":
        from pit_streams.transport.confluent import ConfluentTransport

        return ConfluentTransport(bootstrap, tls=tls, client_id=client_id)
    if kind == "aiokafka":
        from pit_streams.transport.aiokafka import AiokafkaTransport

        return AiokafkaTransport(bootstrap, tls=tls, client_id=client_id)
    raise ConfigError(f"unknown transport {kind!r}: choose one of {', '.join(TRANSPORTS)}")
