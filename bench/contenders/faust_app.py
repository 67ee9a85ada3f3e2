"""faust: a plain faust-streaming agent doing the shared per-record work.

Run as ``python -m bench.contenders.faust_app worker -l warn`` with the ``BENCH_*``
environment set by the harness. The agent takes batches of events (``take_events``), sends every
output, awaits all their acks, then persists the batch's dedupe marks; faust commits acked
offsets itself (every ``broker_commit_every`` records / ``broker_commit_interval`` seconds,
flushing its producer first).

Topics: ``topic_allow_declare=False`` (faust creates nothing: the harness pre-creates input and
output, the broker has ``auto.create.topics.enable=false``) and ``topic_disable_leader=True`` (no
``<app>-__assignor-__leader`` topic; no tables, so no changelog topics either).

faust enables producer idempotence only inside exactly-once transactions; to match the other
contenders (idempotent producer, acks=all) its aiokafka driver's extra producer settings are
overridden below.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from bench.work import Worker


def _idempotent_settings(self: Any) -> Mapping[str, Any]:
    return {"acks": "all", "enable_idempotence": True}


faust_aiokafka.Producer._settings_extra = _idempotent_settings  # type: ignore[method-assign]

BROKER = os.environ.get("BENCH_BROKER", "127.0.0.1:9092")
INPUT = os.environ.get("BENCH_INPUT_TOPIC", "bench.fills")
OUTPUT = os.environ.get("BENCH_OUTPUT_TOPIC", "bench.faust.out")
GROUP = os.environ.get("BENCH_GROUP_ID", "bench-faust")
DATA_DIR = os.environ.get("BENCH_DATA_DIR", "/tmp/bench-faust")
BATCH = int(os.environ.get("BENCH_BATCH", "1000"))
NAME = os.environ.get("BENCH_PRODUCER_NAME", "bench-faust/0.1")

app = faust.App(
    GROUP,
    broker=f"kafka://{BROKER}",
    datadir=os.path.join(DATA_DIR, "faust"),
    key_serializer="raw",
    value_serializer="raw",
    topic_allow_declare=False,
    topic_disable_leader=True,
    consumer_auto_offset_reset="earliest",
    producer_acks=-1,
    # faust awaits each send, so with no linger its sender ships tiny produce requests; 5 ms lets
    # it batch (measured: ~2.8k -> ~3.7k records/s here).
    producer_linger=float(os.environ.get("BENCH_FAUST_LINGER", "0.005")),
    broker_max_poll_records=BATCH,
    stream_buffer_maxsize=max(4096, BATCH * 4),
    web_enabled=False,
)
fills = app.topic(INPUT, key_type=bytes, value_type=bytes, partitions=8)
navs = app.topic(OUTPUT, key_type=bytes, value_type=bytes, partitions=8)
worker = Worker(producer=NAME, out_topic=OUTPUT, dedupe_dir=os.path.join(DATA_DIR, "dedupe"))


@app.task  # type: ignore[untyped-decorator]
async def _quiet_logging() -> None:
    """faust's worker leaves the root logger at DEBUG whatever ``-l`` says (only its handler
    filters), so every ``log.debug`` in faust/aiokafka builds a record that is then dropped:
    ~7% of faust's CPU in a profile of this benchmark. Raise the level as a tuned app would."""
    logging.getLogger().setLevel(logging.WARNING)


@app.agent(fills)  # type: ignore[arg-type]
async def nav(stream: faust.Stream[bytes]) -> None:
    async for events in stream.take_events(BATCH, within=0.005):
        futures = []
        for event in events:
            out = worker.process(event.message.value, event.message.key)
            if out is not None:
                futures.append(await navs.send(key=out[0], value=out[1], force=True))
        if futures:
            await asyncio.gather(*futures)
        worker.batch_done()


if __name__ == "__main__":
    app.main()
