"""quix: a Quix Streams 3.x application doing the shared per-record work.

Runs in its own virtualenv (``bench/.venvs/quix``: quixstreams pins confluent-kafka below the
project's) with ``PYTHONPATH`` at the repo root, so it imports the same :mod:`bench.work` and
``pit_streams.contract`` code.

Dedupe uses Quix's own persistent RocksDB state (``stateful=True``). Three variants, chosen by
``BENCH_QUIX_CHANGELOG`` (``on``/``off``) and ``BENCH_QUIX_GUARANTEE`` (``at-least-once`` /
``exactly-once``), each a separate contender (``bench/registry.py``):

- ``quix``: changelog topics **on** (Quix creates its own compacted changelog topic), like
  pit-streams, which writes its dedupe marks to a changelog: the like-for-like comparison;
- ``quix-no-changelog``: changelog off (the state lives on the local disk only);
- ``quix-eos``: ``processing_guarantee="exactly-once"`` with the changelog on.

Quix writes a state batch per checkpoint (every ``commit_interval``, 5 s by default; exactly-once:
outputs, changelog and offsets in one transaction, visible to ``read_committed`` readers at that
interval). Input and output topics are pre-created by the harness; only the changelog variants let
Quix create topics (its changelog topic). Idempotent producer (acks=all).
"""

from __future__ import annotations

import os
import time
from typing import Any

from pit.events.v1.events_pb2 import TradeFillEvent
from quixstreams import Application

from bench.contenders.common import parse_args
from bench.work import build_output
from pit_streams.contract.envelope import Accepted, unwrap


def main() -> None:
    args = parse_args(__doc__ or "")
    changelog = os.environ.get("BENCH_QUIX_CHANGELOG", "on") == "on"
    guarantee = os.environ.get("BENCH_QUIX_GUARANTEE", "at-least-once")
    app = Application(
        broker_address=args.broker,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        auto_create_topics=changelog,
        use_changelog_topics=changelog,
        processing_guarantee=guarantee,
        state_dir=os.path.join(args.data_dir, "quix-state"),
        producer_extra_config={"enable.idempotence": True, "acks": "all"},
        loglevel="WARNING",
    )
    src = app.topic(args.input, key_deserializer="bytes", value_deserializer="bytes")
    dst = app.topic(args.output, key_serializer="bytes", value_serializer="bytes")
    name, out_topic = args.name, args.output

    def handle(value: bytes, key: bytes, timestamp: int, headers: Any, state: Any) -> bytes | None:
        res = unwrap(value, key, TradeFillEvent)
        if not isinstance(res, Accepted):
            return None
        eid = res.envelope.event_id
        if state.exists(eid):
            return None
        state.set(eid, time.time_ns())
        return build_output(res, producer=name, topic=out_topic)[1]

    sdf = app.dataframe(topic=src)
    sdf = sdf.apply(handle, stateful=True, metadata=True)
    sdf = sdf.filter(lambda v: v is not None)
    sdf.to_topic(dst)
    app.run()


if __name__ == "__main__":
    main()
