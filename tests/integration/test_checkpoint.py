"""Commit after ack, on a real broker: a committed offset always has its outputs and changelog
records readable behind it, and an unwritable output topic holds the commit back until it heals."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from itapp import make_app
from kafka_support import create_topic
from support import Scenario, committed, derived, fill, new_worker, produce, read_all, run_until

from pit_streams.contract import Key
from pit_streams.runtime.worker import WorkerSettings
from pit_streams.transport.aiokafka import AiokafkaTransport
from pit_streams.transport.base import Transport
from pit_streams.transport.confluent import ConfluentTransport

pytestmark = pytest.mark.kafka


async def test_each_commit_follows_the_acks_of_its_outputs_and_changelog(
    transport: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    sc = Scenario(kafka_bootstrap)
    sc.create()
    app = make_app(sc.name, sc.source, sc.output)
    inputs = [fill(key=Key("demo", "alpha", f"{i % 3:04d}")) for i in range(9)]
    offsets = produce(kafka_bootstrap, sc.source, inputs)
    worker = new_worker(transport, kafka_bootstrap, app, tmp_path)
    await worker.start()
    try:
        batches = 0
        deadline = time.monotonic() + 60
        while worker.metrics.processed < len(inputs):
            assert time.monotonic() < deadline, "inputs not processed within 60s"
            if not await worker.run_once():
                continue
            batches += 1
            # Right after one run_once: the broker holds the commit, and everything it covers is readable.
            [(_, next_offset)] = committed(kafka_bootstrap, sc.name, sc.source, 1).items()
            assert next_offset is not None and next_offset == worker.metrics.committed_offsets[f"{sc.source}[0]"]
            done = [r for r, o in zip(inputs, offsets, strict=True) if o < next_offset]
            assert next_offset == offsets[len(done) - 1] + 1
            outputs = read_all(kafka_bootstrap, sc.output)
            assert [o.envelope.event_id for o in outputs] == [derived(app, r.event_id) for r in done]
            changelog = read_all(kafka_bootstrap, sc.changelog)
            marked = {
                event_id
                for rec in changelog
                if rec.key is not None and rec.key.startswith(b"d/") and rec.value is not None
                for event_id in _ids(rec.envelope.payload)
            }
            assert {r.event_id for r in done} <= marked
            state = {rec.key for rec in changelog if rec.key is not None and rec.key.startswith(b"k/")}
            touched = {Key("demo", "alpha", f"{i % 3:04d}") for i in range(len(done))}
            assert state == {f"k/{k}".encode() for k in touched}
            resume = [rec for rec in changelog if rec.key == f"o/{sc.source}".encode()]
            assert _offset(resume[-1].envelope.payload) == next_offset  # the state knows its offsets
        assert batches >= 1
    finally:
        await worker.stop()


def _ids(payload: bytes) -> list[str]:
    from pit_streams.state.changelog import marked_ids

    return [event_id for _, event_id in marked_ids(payload)]


def _offset(payload: bytes) -> int:
    from google.protobuf.wrappers_pb2 import Int64Value

    return Int64Value.FromString(payload).value


def _transport(kind: str, bootstrap: str, client_id: str) -> Transport:
    if kind == "confluent":
        return ConfluentTransport(bootstrap, client_id=client_id, delivery_timeout_ms=3000)
    return AiokafkaTransport(bootstrap, client_id=client_id, delivery_timeout_ms=3000)


async def test_unwritable_output_blocks_the_commit_until_it_is_writable(
    transport: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    sc = Scenario(kafka_bootstrap)
    sc.create(output=False)  # the output topic does not exist yet
    app = make_app(sc.name, sc.source, sc.output)
    [record] = [fill()]
    produce(kafka_bootstrap, sc.source, [record])
    worker = new_worker(
        transport,
        kafka_bootstrap,
        app,
        tmp_path,
        transport=_transport(transport, kafka_bootstrap, app.producer),
        settings=WorkerSettings(tmp_path, delivery_retry_backoff_s=0.1),
    )
    await worker.start()
    try:
        await run_until([worker], lambda: worker.metrics.delivery_failures >= 1, what="a failed delivery")
        assert committed(kafka_bootstrap, sc.name, sc.source, 1) == {0: None}
        assert not worker.metrics.healthy

        create_topic(kafka_bootstrap, sc.output)
        await run_until([worker], lambda: worker.metrics.commits >= 1, within_s=90, what="the commit after healing")
    finally:
        await worker.stop()
    assert committed(kafka_bootstrap, sc.name, sc.source, 1) == {0: 1}
    assert [o.envelope.event_id for o in read_all(kafka_bootstrap, sc.output)] == [derived(app, record.event_id)]
    assert worker.metrics.healthy
