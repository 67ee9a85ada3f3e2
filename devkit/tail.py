"""A live reader of a topic: from the beginning of every partition, incrementally (assigned
partitions, no group join), for watching outputs arrive while workers run."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

from devkit.records import Record, consumer, to_record


class Tail:
    """``poll()`` returns what arrived since the last call."""

    def __init__(self, bootstrap: str, topic: str, timeout: float = 10.0, **config: Any) -> None:
        self.topic = topic
        self._consumer = consumer(bootstrap, "tail", **{"enable.partition.eof": False, **config})
        info = self._consumer.list_topics(topic=topic, timeout=timeout).topics.get(topic)
        if info is None or info.error is not None:
            self._consumer.close()
            raise KafkaException(f"topic {topic} is not there")
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(info.partitions)])

    def poll(self, timeout: float = 0.2, max_seconds: float = 1.0) -> list[Record]:
        """The records there now, read for at most about ``max_seconds`` (a live stream never runs
        dry); waits up to ``timeout`` for a first record, never for more than one."""
        out: list[Record] = []
        deadline = time.monotonic() + max_seconds
        while True:
            # consume(n, timeout) waits for n records or the timeout: block for one record only,
            # then take what is already fetched, so a reader timing arrivals adds no wait.
            msgs = self._consumer.consume(num_messages=1, timeout=timeout)
            if not msgs:
                return out
            msgs += self._consumer.consume(num_messages=10_000, timeout=0)
            for m in msgs:
                if m.error() is not None:
                    raise KafkaException(m.error())
                out.append(to_record(m))
            if time.monotonic() > deadline:
                return out
            timeout = 0.05

    def close(self) -> None:
        self._consumer.close()
