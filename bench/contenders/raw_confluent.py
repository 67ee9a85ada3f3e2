"""raw-confluent: a hand-written confluent-kafka batch loop.

consume a batch -> unwrap/dedupe/build outputs -> produce all -> flush (acks) -> persist the
batch's dedupe marks -> commit the batch's offsets synchronously. Idempotent producer (acks=all).
"""

from __future__ import annotations

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from bench.contenders.common import dedupe_dir, parse_args, stop_flag
from bench.work import Worker


def main() -> None:
    args = parse_args(__doc__ or "")
    stop = stop_flag()
    worker = Worker(producer=args.name, out_topic=args.output, dedupe_dir=dedupe_dir(args.data_dir))
    consumer = Consumer(
        {
            "bootstrap.servers": args.broker,
            "group.id": args.group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 100,
        }
    )
    producer = Producer(
        {
            "bootstrap.servers": args.broker,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    consumer.subscribe([args.input])
    produce = producer.produce
    process = worker.process
    out_topic = args.output
    try:
        while not stop.is_set():
            # Block for the first record only, then take whatever else is already fetched:
            # large batches under load, no added wait when the load is light.
            msgs = consumer.consume(num_messages=1, timeout=0.5)
            if not msgs:
                continue
            msgs += consumer.consume(num_messages=args.batch - 1, timeout=0)
            offsets: dict[tuple[str, int], int] = {}
            for m in msgs:
                if m.error():
                    raise KafkaException(m.error())
                out = process(m.value(), m.key())
                if out is not None:
                    while True:
                        try:
                            produce(out_topic, value=out[1], key=out[0])
                            break
                        except BufferError:
                            producer.poll(0.01)
                offsets[(str(m.topic()), int(m.partition() or 0))] = int(m.offset() or 0) + 1
            if producer.flush(60) != 0:
                raise RuntimeError("outputs not acked within 60s")
            worker.batch_done()
            consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
    finally:
        consumer.close()
        producer.flush(10)
        worker.close()


if __name__ == "__main__":
    main()
