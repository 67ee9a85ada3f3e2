"""What the tools share: broker options like the worker's, payload classes from the catalog,
and reading a topic from its beginning to its end (or following it)."""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from google.protobuf import message_factory
from google.protobuf.message import Message

from pit_streams.errors import ConfigError

ClientConfig = dict[str, str | int | float | bool]


def add_broker_args(p: argparse.ArgumentParser) -> None:
    """``--broker``, ``--allow-plaintext`` and ``--catalog``, as ``pit-streams worker`` has them."""
    p.add_argument("--broker", help="Kafka bootstrap host:port (default: $PIT_KAFKA_BOOTSTRAP); mutual TLS"
                   " from $PIT_KAFKA_TLS_DIR (ca.crt, user.crt, user.key)")
    p.add_argument("--allow-plaintext", action="store_true", default=None,
                   help="connect without TLS to a non-loopback broker (default: refused unless"
                   " $PIT_KAFKA_ALLOW_PLAINTEXT=1)")
    p.add_argument("--catalog", help="topic catalog (default: $PIT_CATALOG or infra/topics.yaml)")


def client_config(args: argparse.Namespace) -> ClientConfig:
    """confluent-kafka settings for ``args``: bootstrap, TLS, the plaintext rule."""
    from pit_streams.security import TlsFiles
    from pit_streams.transport.factory import check_plaintext, resolve_bootstrap

    bootstrap = resolve_bootstrap(args.broker)
    tls = TlsFiles.from_env()
    check_plaintext(bootstrap, tls, args.allow_plaintext)
    config: ClientConfig = {"bootstrap.servers": bootstrap}
    if tls is not None:
        config.update(tls.librdkafka())
    return config


def message_class(full_name: str) -> type[Message]:
    """The generated class of a protobuf message named ``full_name`` (any installed pit-proto type)."""
    from pit_streams.catalog import default_pool

    try:
        descriptor = default_pool().FindMessageTypeByName(full_name)
    except KeyError:
        raise ConfigError(f"protobuf message {full_name!r} is not installed: upgrade pit-proto") from None
    return message_factory.GetMessageClass(descriptor)


def catalogued_types(topic: str, catalog_path: str | None) -> tuple[str, ...]:
    """The payload types the catalog lists for ``topic``; a one-line ``ConfigError`` if it is not there."""
    from pit_streams.catalog import load_catalog
    from pit_streams.suggest import did_you_mean

    catalog = load_catalog(catalog_path)
    spec = catalog.get(topic)
    if spec is None:
        raise ConfigError(f"topic {topic} is not in the catalog {catalog.path}{did_you_mean(topic, catalog.names())}")
    return spec.payload_types


def read_topic(config: ClientConfig, topic: str, *, follow: bool = False, timeout_s: float = 10.0,
               start: Mapping[int, int] | None = None) -> Iterator[Any]:
    """Every record of ``topic`` (confluent-kafka ``Message``s, committed ones only), from the
    beginning (or ``start[partition]``; -1 skips the partition) to the end it had when called, or
    on and on with ``follow``. No group offsets are committed: a tool never moves a consumer group."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    consumer = Consumer({**config, "group.id": f"pit-streams-tool-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "isolation.level": "read_committed", "auto.offset.reset": "earliest"})
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s)
        meta = metadata.topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise ConfigError(f"topic {topic} does not exist on the broker: run 'pit-streams topics apply'")
        begin = {p: OFFSET_BEGINNING for p in meta.partitions} if start is None else {
            p: o for p, o in start.items() if o >= 0 and p in meta.partitions}
        remaining = set()
        for partition, offset in begin.items():
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout_s)
            if high > max(low, offset):
                remaining.add(partition)
        if not begin:
            return
        consumer.assign([TopicPartition(topic, p, o) for p, o in sorted(begin.items())])
        while follow or remaining:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    remaining.discard(msg.partition())
                    continue
                raise ConfigError(f"cannot read {topic}: {error.str()}")
            yield msg
    finally:
        consumer.close()
