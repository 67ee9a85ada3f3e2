"""The local Kafka broker itself (infra/kafka): clients can talk to it, topics are never
auto-created, and kafka.sh start/stop behave when repeated."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient
from kafka_support import consume_all, create_topic, free_port, run_kafka_sh, unique_topic

pytestmark = pytest.mark.kafka


def test_confluent_produce_consume_roundtrip(kafka_bootstrap: str) -> None:
    topic = unique_topic("test.broker.confluent")
    create_topic(kafka_bootstrap, topic)
    reports: list[tuple[KafkaError | None, Message]] = []
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    producer.produce(
        topic,
        key=b"k-1",
        value=b'{"hello": "pit"}',
        headers=[("event_id", b"e-1"), ("trace", b"t-1")],
        on_delivery=lambda err, msg: reports.append((err, msg)),
    )
    assert producer.flush(30) == 0
    assert len(reports) == 1 and reports[0][0] is None, reports

    records = consume_all(kafka_bootstrap, topic, expected_count=1, timeout=30)

    assert len(records) == 1
    r = records[0]
    assert (r.key, r.value) == (b"k-1", b'{"hello": "pit"}')
    assert r.headers == [("event_id", b"e-1"), ("trace", b"t-1")]
    assert (r.partition, r.offset) == (0, 0)


async def test_aiokafka_produce_consume_roundtrip(kafka_bootstrap: str) -> None:
    topic = unique_topic("test.broker.aiokafka")
    create_topic(kafka_bootstrap, topic)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        md = await producer.send_and_wait(topic, b"v-1", key=b"k-1", headers=[("event_id", b"e-1")])
    finally:
        await producer.stop()
    assert (md.partition, md.offset) == (0, 0)

    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        msg = await asyncio.wait_for(consumer.getone(), timeout=30)
    finally:
        await consumer.stop()
    assert (msg.key, msg.value) == (b"k-1", b"v-1")
    assert list(msg.headers) == [("event_id", b"e-1")]


def test_producing_to_unknown_topic_fails_and_does_not_create_it(kafka_bootstrap: str) -> None:
    topic = unique_topic("test.broker.never-created")
    errors: list[KafkaError | None] = []
    producer = Producer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "message.timeout.ms": 3000,
            # librdkafka waits this long for a "new" topic to appear before failing the message
            # with the broker's error; the default (30 s) would turn it into a plain timeout.
            "topic.metadata.propagation.max.ms": 1000,
        }
    )
    producer.produce(topic, value=b"x", on_delivery=lambda err, _msg: errors.append(err))
    assert producer.flush(15) == 0

    assert len(errors) == 1 and errors[0] is not None
    assert errors[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART, errors[0]
    md = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10)
    assert topic not in md.topics


def test_kafka_sh_start_twice_and_restart(tmp_path: Path) -> None:
    """A second `start` reports the running broker and exits 0; up/down works twice in a row."""
    data_dir = tmp_path / "kafka"
    port = free_port()
    opts = ["--port", str(port), "--controller-port", str(free_port()), "--data-dir", str(data_dir)]
    # --owner-pid: the broker also goes away if this pytest process is killed mid-test.
    start = ["start", *opts, "--owner-pid", str(os.getpid())]
    try:
        first = run_kafka_sh(*start)
        assert first.returncode == 0, first.stdout
        assert "started Apache Kafka" in first.stdout
        pid = (data_dir / "kafka.pid").read_text().strip()

        second = run_kafka_sh(*start)
        assert second.returncode == 0, second.stdout
        assert f"already running on 127.0.0.1:{port} (pid {pid})" in second.stdout
        assert "make kafka-down" in second.stdout

        down = run_kafka_sh("stop", *opts)
        assert down.returncode == 0 and "stopped" in down.stdout, down.stdout
        assert not (data_dir / "kafka.pid").exists()

        again = run_kafka_sh(*start)
        assert again.returncode == 0 and "started Apache Kafka" in again.stdout, again.stdout
        down = run_kafka_sh("stop", *opts)
        assert down.returncode == 0 and "stopped" in down.stdout, down.stdout

        idle = run_kafka_sh("stop", *opts)
        assert idle.returncode == 0 and "not running" in idle.stdout, idle.stdout
    finally:
        run_kafka_sh("stop", *opts)
