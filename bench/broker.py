"""The benchmark's Kafka: a private broker started with ``infra/kafka/kafka.sh`` on a free
loopback port (stopped at the end, also on failure), or an existing one given by ``--broker``;
plus the few admin calls the harness needs (topics are always created explicitly: the broker
runs with ``auto.create.topics.enable=false``)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

REPO = Path(__file__).resolve().parent.parent
KAFKA_SH = REPO / "infra" / "kafka" / "kafka.sh"


def run_kafka_sh(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run infra/kafka/kafka.sh with stdout and stderr merged into ``.stdout``; never raises on its exit code."""
    return subprocess.run(
        ["bash", str(KAFKA_SH), *args],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_loopback(bootstrap: str) -> None:
    """Refuse anything but a loopback broker: the benchmark never sends traffic elsewhere."""
    for server in bootstrap.split(","):
        host = server.rsplit(":", 1)[0].strip("[]")
        try:
            infos = socket.getaddrinfo(host, None)
        except OSError as e:
            raise SystemExit(f"cannot resolve broker host {host!r}: {e}") from e
        for info in infos:
            addr = str(info[4][0])
            if not (addr.startswith("127.") or addr == "::1"):
                raise SystemExit(f"refusing non-loopback broker {server!r} ({addr})")


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def wait_ready(bootstrap: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            md = admin(bootstrap).list_topics(timeout=5)
            if md.brokers:
                return
        except Exception as e:  # KafkaException while the broker boots
            last = e
        time.sleep(0.5)
    raise RuntimeError(f"broker {bootstrap} not ready after {timeout:.0f}s: {last}")


def existing_topics(bootstrap: str) -> set[str]:
    return set(admin(bootstrap).list_topics(timeout=10).topics)


def create_topics(
    bootstrap: str, names: Iterable[str], partitions: int = 8, config: dict[str, str] | None = None
) -> None:
    topics = [NewTopic(n, num_partitions=partitions, replication_factor=1, config=config or {}) for n in names]
    if not topics:
        return
    a = admin(bootstrap)  # keep a reference: the futures fail if the client is collected
    for fut in a.create_topics(topics, operation_timeout=30).values():
        fut.result()
    # Metadata propagates asynchronously: wait until every partition has a leader.
    wanted = {t.topic for t in topics}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        md = a.list_topics(timeout=5)
        ok = all(
            n in md.topics
            and md.topics[n].error is None
            and len(md.topics[n].partitions) == partitions
            and all(p.leader >= 0 for p in md.topics[n].partitions.values())
            for n in wanted
        )
        if ok:
            return
        time.sleep(0.2)
    raise RuntimeError(f"topics {sorted(wanted)} did not get leaders in time")


def delete_topics(bootstrap: str, names: Iterable[str]) -> None:
    names = list(names)
    if not names:
        return
    a = admin(bootstrap)
    for fut in a.delete_topics(names, operation_timeout=30).values():
        with contextlib.suppress(Exception):
            fut.result()


class PrivateBroker:
    """``infra/kafka/kafka.sh start|stop --port P --data-dir D`` on a free port under /tmp."""

    def __init__(self) -> None:
        self.port = free_port()
        self.data_dir = Path(tempfile.mkdtemp(prefix="pit-bench-kafka-"))
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.started = False

    def start(self) -> None:
        if not KAFKA_SH.exists():
            raise SystemExit(f"{KAFKA_SH} does not exist yet: pass --broker HOST:PORT to use a running broker")
        print(f"[bench] starting private broker on {self.bootstrap} (data {self.data_dir})", flush=True)
        self.started = True
        # The broker also stops when this harness dies without running its cleanup (--owner-pid).
        res = run_kafka_sh("start", "--port", str(self.port), "--data-dir", str(self.data_dir),
                           "--owner-pid", str(os.getpid()), timeout=600)
        if res.returncode != 0:
            raise RuntimeError(f"kafka.sh start failed ({res.returncode}):\n{res.stdout[-4000:]}")
        wait_ready(self.bootstrap)

    def stop(self) -> None:
        if self.started:
            res = run_kafka_sh("stop", "--data-dir", str(self.data_dir), timeout=120)
            if res.returncode != 0:
                print(f"[bench] kafka.sh stop failed ({res.returncode}):\n{res.stdout[-2000:]}", file=sys.stderr)
            self.started = False
        shutil.rmtree(self.data_dir, ignore_errors=True)


@contextlib.contextmanager
def broker(existing: str | None) -> Iterator[str]:
    """Yield a bootstrap string: ``existing`` as is, or a private broker for the block's lifetime."""
    if existing:
        check_loopback(existing)
        wait_ready(existing, timeout=30)
        yield existing
        return
    pb = PrivateBroker()
    try:
        pb.start()
        yield pb.bootstrap
    finally:
        pb.stop()
