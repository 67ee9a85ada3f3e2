"""raw-aiokafka: a hand-written aiokafka ``getmany`` batch loop.

getmany -> unwrap/dedupe/build outputs -> ``send`` all -> await every ack -> persist the batch's
dedupe marks -> commit. Idempotent producer (acks=all).
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.contenders.common import dedupe_dir, parse_args, stop_flag
from bench.work import Worker


async def run() -> None:
    args = parse_args(__doc__ or "")
    stop = stop_flag()
    worker = Worker(producer=args.name, out_topic=args.output, dedupe_dir=dedupe_dir(args.data_dir))
    consumer = AIOKafkaConsumer(
        args.input,
        bootstrap_servers=args.broker,
        group_id=args.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        max_poll_records=args.batch,
    )
    producer = AIOKafkaProducer(bootstrap_servers=args.broker, enable_idempotence=True, acks="all")
    await producer.start()
    await consumer.start()
    process = worker.process
    out_topic = args.output
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=500, max_records=args.batch)
            if not batches:
                continue
            futures = []
            for records in batches.values():
                for r in records:
                    out = process(r.value, r.key)
                    if out is not None:
                        futures.append(await producer.send(out_topic, value=out[1], key=out[0]))
            if futures:
                await asyncio.gather(*futures)
            worker.batch_done()
            await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()
        worker.close()


def main() -> None:
    asyncio.run(run())


if __name__ == "__main__":
    main()
