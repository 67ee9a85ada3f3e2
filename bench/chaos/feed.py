"""The input feed: a background thread producing a scenario's records (idempotent producer,
``acks=all``, records keep their headers), paced at ``rate`` records/s or as fast as possible.

It must outlive a broker restart: ``message.timeout.ms`` is long, and librdkafka retries
while the broker is away (idempotence keeps the per-partition order and avoids duplicates).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, Producer

from bench.chaos.inputs import InputRecord
from devkit.topics import QUIET


class Feed(threading.Thread):
    def __init__(self, bootstrap: str, topic: str, records: Sequence[InputRecord], *, rate: float | None = None,
                 max_message_bytes: int = 1_000_000, log_path: Path | None = None) -> None:  # fmt: skip
        super().__init__(name="chaos-feed", daemon=True)
        self.topic = topic
        self.records = records
        self.rate = rate
        self.sent = 0
        self.acked = 0
        self.failed: list[str] = []
        self.error: BaseException | None = None
        self.finished = threading.Event()
        self.started_at = 0.0
        self.seconds = 0.0
        self._halt = threading.Event()
        self.client_errors: list[str] = []
        extra: dict[str, Any] = dict(QUIET)
        if log_path is not None:  # librdkafka's own log of the feed, for the evidence
            logger = logging.getLogger(f"chaos.feed.{id(self)}")
            logger.propagate = False
            logger.setLevel(logging.INFO)
            handler = logging.FileHandler(log_path)
            handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
            logger.addHandler(handler)
            extra = {"logger": logger, "log_level": 7, "debug": "eos"}  # eos: the idempotence state machine
        self._producer = Producer({
            "bootstrap.servers": bootstrap,
            "client.id": "chaos-feed",
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "partitioner": "murmur2_random",  # as the pit-streams transports
            "message.timeout.ms": 600_000,  # survive a broker restart
            "message.max.bytes": max_message_bytes,
            "error_cb": self._on_error,
            **extra,
        })  # fmt: skip

    def _on_error(self, err: KafkaError) -> None:
        if len(self.client_errors) < 50:
            self.client_errors.append(f"{time.strftime('%H:%M:%S')} {'FATAL ' if err.fatal() else ''}{err}")

    def _on_delivery(self, err: KafkaError | None, _msg: Any) -> None:
        if err is None:
            self.acked += 1
        elif len(self.failed) < 20:
            self.failed.append(str(err))

    def run(self) -> None:
        self.started_at = time.monotonic()
        try:
            for n, rec in enumerate(self.records, 1):
                if self._halt.is_set():
                    break
                while True:
                    try:
                        self._producer.produce(self.topic, rec.value, rec.key, headers=list(rec.headers),
                                               on_delivery=self._on_delivery)  # fmt: skip
                        break
                    except BufferError:
                        self._producer.poll(0.05)
                self.sent = n
                self._producer.poll(0)
                if self.rate:
                    ahead = n / self.rate - (time.monotonic() - self.started_at)
                    if ahead > 0.02:
                        time.sleep(ahead)
            while self._producer.flush(5.0):
                if self._halt.is_set():
                    break
        except BaseException as exc:  # reported by the scenario
            self.error = exc
        finally:
            self.seconds = time.monotonic() - self.started_at
            self.finished.set()

    def stop(self) -> None:
        self._halt.set()
