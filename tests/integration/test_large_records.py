"""The largest record a topic accepts is still dead-lettered whole, not dropped or crashed on.

A refused record gains headers on its way to the dead-letter topic; at the source topic's size
limit that makes it larger than the limit, so the catalog gives the dead-letter topic more room
(infra/topics.yaml) and the clients leave the limit to the broker.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType
from itapp import make_app
from support import Scenario, dead_letters, new_worker, run_until

from pit_streams.app import DEAD_LETTER_TOPIC
from pit_streams.catalog import load_catalog
from pit_streams.runtime import deadletter

pytestmark = pytest.mark.kafka

BROKER_LIMIT = 1_048_588  # Kafka's default message.max.bytes, which the source topic keeps


def apply_catalog_config(bootstrap: str, topic: str) -> None:
    spec = load_catalog(Path(__file__).resolve().parents[2] / "infra" / "topics.yaml").get(topic)
    assert spec is not None and "max.message.bytes" in spec.config
    entries = [ConfigEntry(k, str(v), incremental_operation=AlterConfigOpType.SET) for k, v in spec.config.items()]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.incremental_alter_configs([ConfigResource(ResourceType.TOPIC, topic,
                                                                  incremental_configs=entries)]).values():
        future.result(timeout=30)


async def test_a_refused_record_at_the_size_limit_is_dead_lettered_whole(
    transport: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    sc = Scenario(kafka_bootstrap)
    sc.create()
    apply_catalog_config(kafka_bootstrap, DEAD_LETTER_TOPIC)
    key = b"t/demo/s/alpha/c/0001"
    value = b"\xff" + bytes(range(256)) * ((BROKER_LIMIT - 400) // 256)  # not an envelope, ~1 MiB
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "message.max.bytes": 2 * BROKER_LIMIT})
    errors: list[object] = []
    producer.produce(sc.source, value, key, partition=0, on_delivery=lambda err, _msg: errors.append(err))
    assert producer.flush(30) == 0 and errors == [None], errors

    worker = new_worker(transport, kafka_bootstrap, make_app(sc.name, sc.source, sc.output), tmp_path)
    await worker.start()
    try:
        await run_until([worker], lambda: worker.metrics.committed_offsets.get(f"{sc.source}[0]") == 1,
                        what="the large record committed")
    finally:
        await worker.stop()
    [dead] = dead_letters(kafka_bootstrap, sc.name)
    assert dead.value == value and dead.key == key
    assert dead.record.key == key and dead.envelope.key == key.decode()  # the source's canonical key
    assert dead.headers[deadletter.REASON] == b"not_envelope"
