"""Records that must not hold anything up, on the real broker: one whose output the broker
refuses for good (over the output topic's max.message.bytes), and a batch of records whose
handler always fails."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from kafka_support import create_topic
from pit.events.v1.events_pb2 import TradeFillEvent
from support import DEAD_LETTER_PARTITIONS, Scenario, dead_letters, ensure_topic, fill, new_worker, produce, read_all

import pit_streams
from pit_streams import DEAD_LETTER_TOPIC
from pit_streams.contract import Key
from pit_streams.runtime import deadletter
from pit_streams.runtime.worker import WorkerSettings
from pit_streams.transport.base import Guarantee

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]


def echo_app(sc: Scenario, *, retries: int = 0) -> pit_streams.App:
    app = pit_streams.App(sc.name, version="1.0.0", handler_retries=retries, retry_backoff=timedelta(milliseconds=50))

    @app.handler(sc.source, TradeFillEvent, emits={sc.output: TradeFillEvent})
    def on_fill(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
        if fill.instrument == "BOOM":
            raise RuntimeError("poison")
        padding = "x" * (5_000 if fill.instrument == "LARGE" else 0)  # over the output topic's 2,000 bytes
        # State, so each checkpoint's transaction carries changelog records beside the outputs
        # (exactly-once: a refused output's abort purges them, which must not hide the refusal).
        ctx.state.put("fills", ctx.state.get("fills") + 1)
        ctx.emit(sc.output, TradeFillEvent(instrument=fill.instrument, qty=fill.qty, strategy_ref=padding))

    return app


def _create(sc: Scenario, output_config: dict[str, str] | None = None) -> None:
    create_topic(sc.bootstrap, sc.source)
    create_topic(sc.bootstrap, sc.output, 1, output_config)
    create_topic(sc.bootstrap, sc.changelog, 1, {"cleanup.policy": "compact"})
    ensure_topic(sc.bootstrap, DEAD_LETTER_TOPIC, DEAD_LETTER_PARTITIONS)


# exactly_once needs the confluent transport; there the outputs travel in the checkpoint's transaction.
@pytest.mark.parametrize(("transport", "guarantee"), [
    ("confluent", "at_least_once"), ("confluent", "exactly_once"), ("aiokafka", "at_least_once")])
async def test_an_undeliverable_record_is_dead_lettered_and_the_others_go_through(
    transport: str, guarantee: Guarantee, kafka_bootstrap: str, tmp_path: Path
) -> None:
    sc = Scenario(kafka_bootstrap)
    _create(sc, {"max.message.bytes": "2000"})
    tenants = [Key("demo", "alpha", "0001"), Key("other", "beta", "0001")]
    inputs = [fill(key=tenants[0]), fill(key=tenants[1], instrument="LARGE"), fill(key=tenants[1]),
              fill(key=tenants[0])]
    produce(kafka_bootstrap, sc.source, inputs)
    worker = new_worker(transport, kafka_bootstrap, echo_app(sc), tmp_path,
                        settings=WorkerSettings(tmp_path, delivery_retry_backoff_s=0.1, guarantee=guarantee))
    await worker.start()
    started = time.monotonic()
    try:
        while worker.metrics.committed_offsets.get(f"{sc.source}[0]") != len(inputs):
            assert time.monotonic() - started < 60, "the batch did not get past the undeliverable record"
            await worker.run_once()
    finally:
        await worker.stop()
    [dead] = dead_letters(kafka_bootstrap, sc.name)
    assert dead.headers[deadletter.REASON] == b"undeliverable"
    # librdkafka: "Broker: Message size too large"; aiokafka: MessageSizeTooLargeError
    assert b"SIZETOOLARGE" in dead.headers[deadletter.DETAIL].upper().replace(b" ", b"").replace(b"_", b"")
    outputs = read_all(kafka_bootstrap, sc.output)
    # The refused send failed its batch, which was handled again: an output the broker had already
    # taken may be sent twice (at-least-once), but only byte for byte the same, under one event id.
    assert {o.envelope.causation_id for o in outputs} == {r.event_id for r in inputs if r is not inputs[1]}
    by_cause: dict[str, set[bytes | None]] = {}
    for o in outputs:
        by_cause.setdefault(o.envelope.causation_id, set()).add(o.value)
    assert all(len(values) == 1 for values in by_cause.values()), "a re-sent output differs from the first"


async def test_a_poison_batch_is_dead_lettered_once_each_within_the_batch_budget(
    transport: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    sc = Scenario(kafka_bootstrap)
    _create(sc)
    inputs = [fill(instrument="BOOM") for _ in range(30)] + [fill()]
    produce(kafka_bootstrap, sc.source, inputs)
    budget = 1.0  # each poison record costs 3 attempts and 50 + 100 ms of backoff
    worker = new_worker(transport, kafka_bootstrap, echo_app(sc, retries=2), tmp_path,
                        settings=WorkerSettings(tmp_path, failure_budget_s=budget))
    await worker.start()
    longest = 0.0
    started = time.monotonic()
    try:
        while worker.metrics.committed_offsets.get(f"{sc.source}[0]") != len(inputs):
            assert time.monotonic() - started < 120, "the poison batch was not worked through"
            t0 = time.monotonic()
            if await worker.run_once():
                longest = max(longest, time.monotonic() - t0)
    finally:
        await worker.stop()
    dead = dead_letters(kafka_bootstrap, sc.name)
    assert sorted(d.headers[deadletter.SOURCE_OFFSET] for d in dead) == sorted(str(o).encode() for o in range(30))
    assert all(d.headers[deadletter.REASON] == b"handler_error" for d in dead)
    assert longest < budget + 2.0, f"a batch ran {longest:.1f} s, past its {budget} s failure budget"
    assert len(read_all(kafka_bootstrap, sc.output)) == 1
