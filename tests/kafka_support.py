"""Test helpers for the real Kafka broker (infra/kafka/kafka.sh).

- ``start_broker(data_dir, extra_props)`` starts a private single-node KRaft broker on free
  loopback ports and returns a ``BrokerHandle`` (``bootstrap``, ``stop()``). The session fixture
  ``kafka_bootstrap`` in conftest.py uses it; tests that need a differently configured broker
  (e.g. an mTLS listener + StandardAuthorizer) call it themselves with ``extra_props``.
- ``create_topic``, ``unique_topic``, ``consume_all``: small confluent-kafka helpers that wait
  for the broker's answer instead of sleeping.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined,unused-ignore]

REPO_ROOT = Path(__file__).resolve().parent.parent
KAFKA_SH = REPO_ROOT / "infra" / "kafka" / "kafka.sh"
JARS_DIR = REPO_ROOT / ".cache" / "kafka-jars"


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kafka_version() -> str:
    """The Apache Kafka version of the resolved broker jars (e.g. '4.1.1'), or '?'."""
    jars = sorted(Path(os.environ.get("KAFKA_JARS_DIR", JARS_DIR)).glob("kafka_2.13-*.jar"))
    return jars[0].name.removeprefix("kafka_2.13-").removesuffix(".jar") if jars else "?"


def run_kafka_sh(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run infra/kafka/kafka.sh with stdout+stderr merged into ``.stdout``; never raises on exit codes."""
    return subprocess.run(
        ["bash", str(KAFKA_SH), *args],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class BrokerHandle:
    """A broker started by ``start_broker``. ``stop()`` is idempotent."""

    bootstrap: str
    port: int
    controller_port: int
    data_dir: Path
    pid: int
    version: str
    start_seconds: float
    startup_output: str = ""
    _stopped: bool = field(default=False, repr=False)

    @property
    def server_log(self) -> Path:
        return self.data_dir / "server.log"

    def stop(self) -> str:
        """Stop the broker (SIGTERM, SIGKILL after a timeout); returns kafka.sh's output."""
        if self._stopped:
            return "already stopped"
        self._stopped = True
        atexit.unregister(self.stop)
        res = run_kafka_sh("stop", "--data-dir", str(self.data_dir), timeout=120)
        if res.returncode != 0:
            raise RuntimeError(f"kafka.sh stop failed ({res.returncode}):\n{res.stdout}")
        return res.stdout.strip()


def start_broker(
    data_dir: str | os.PathLike[str],
    extra_props: str | None = None,
    *,
    port: int | None = None,
    controller_port: int | None = None,
    timeout: float = 300,
) -> BrokerHandle:
    """Start a private single-node KRaft broker; returns once it answers a metadata request.

    ``extra_props`` is the *text* of extra server properties, appended after the template so its
    keys win (e.g. ``listeners=...``, ``listener.security.protocol.map=...``,
    ``authorizer.class.name=...``). Keep the PLAINTEXT listener on ``port``: readiness is probed
    there. The broker is also stopped at interpreter exit and when this process dies
    (``--owner-pid``), so a crashed test run does not leave it behind.
    """
    data = Path(data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    controller_port = controller_port or free_port()
    while controller_port == port:
        controller_port = free_port()
    args = [
        "start",
        "--port", str(port),
        "--controller-port", str(controller_port),
        "--data-dir", str(data),
        "--owner-pid", str(os.getpid()),
    ]  # fmt: skip
    if extra_props is not None:
        extra_file = data / "extra.properties"
        extra_file.write_text(extra_props if extra_props.endswith("\n") else extra_props + "\n")
        args += ["--extra-props", str(extra_file)]
    t0 = time.monotonic()
    res = run_kafka_sh(*args, timeout=timeout)
    elapsed = time.monotonic() - t0
    if res.returncode != 0:
        raise RuntimeError(f"kafka.sh {' '.join(args)} failed ({res.returncode}):\n{res.stdout}")
    if "already running" in res.stdout:
        raise RuntimeError(f"a broker is already running with data dir {data}:\n{res.stdout}")
    handle = BrokerHandle(
        bootstrap=f"127.0.0.1:{port}",
        port=port,
        controller_port=controller_port,
        data_dir=data,
        pid=int((data / "kafka.pid").read_text().strip()),
        version=kafka_version(),
        start_seconds=elapsed,
        startup_output=res.stdout.strip(),
    )
    atexit.register(handle.stop)
    return handle


# --------------------------------------------------------------------------- client helpers


def unique_topic(prefix: str = "test") -> str:
    """A topic name nobody used before, e.g. ``test.3f9c2a1b7d4e``."""
    return f"{prefix}.{uuid.uuid4().hex[:12]}"


def create_topic(
    bootstrap: str,
    name: str,
    partitions: int = 1,
    config: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> None:
    """Create a topic and wait until the broker serves it (every partition has a leader)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = NewTopic(name, num_partitions=partitions, replication_factor=1, config=dict(config or {}))
    futures = admin.create_topics([topic], operation_timeout=timeout, request_timeout=timeout)
    futures[name].result(timeout=timeout)
    # Creation is acknowledged by the controller; wait until the broker's metadata has it too.
    deadline = time.monotonic() + timeout
    while True:
        md = admin.list_topics(topic=name, timeout=timeout)
        t = md.topics.get(name)
        if (
            t is not None
            and t.error is None
            and len(t.partitions) == partitions
            and all(p.leader >= 0 for p in t.partitions.values())
        ):
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"topic {name} has no leader for all {partitions} partitions after {timeout}s")
        time.sleep(0.05)


@dataclass(frozen=True)
class Record:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    partition: int
    offset: int


def _as_bytes(v: str | bytes | None) -> bytes | None:
    return v.encode() if isinstance(v, str) else v


def consume_all(
    bootstrap: str,
    topic: str,
    expected_count: int,
    timeout: float = 30.0,
    config: Mapping[str, Any] | None = None,
) -> list[Record]:
    """Read ``topic`` from the beginning of every partition until ``expected_count`` records
    arrived or ``timeout`` seconds passed; returns what was read (callers assert the count).

    Partitions are assigned directly (no consumer-group join), records come back in
    (partition, offset) order. Only committed transactional records are returned.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"consume-all-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "isolation.level": "read_committed",
            **(config or {}),
        }
    )
    records: list[Record] = []
    try:
        md = consumer.list_topics(topic=topic, timeout=timeout)
        t = md.topics.get(topic)
        if t is None or t.error is not None:
            raise KafkaException(t.error if t is not None else KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(t.partitions)])
        deadline = time.monotonic() + timeout
        while len(records) < expected_count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            batch = consumer.consume(num_messages=expected_count - len(records), timeout=min(remaining, 0.5))
            for msg in batch:
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(err)
                raw_headers = msg.headers() or []
                pairs = list(raw_headers.items()) if isinstance(raw_headers, dict) else list(raw_headers)
                partition, offset = msg.partition(), msg.offset()
                assert partition is not None and offset is not None
                records.append(
                    Record(
                        key=_as_bytes(msg.key()),
                        value=_as_bytes(msg.value()),
                        headers=[(k, _as_bytes(v)) for k, v in pairs],
                        partition=partition,
                        offset=offset,
                    )
                )
    finally:
        consumer.close()
    records.sort(key=lambda r: (r.partition, r.offset))
    return records
