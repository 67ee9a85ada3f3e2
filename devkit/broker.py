"""A private single-node KRaft broker on loopback, from the Maven-resolved jars, driven through
``infra/kafka/kafka.sh`` (the one launcher: ``make kafka-up`` uses it too).

``Broker.start()`` can be called again after ``stop()``: same ports and data dir, so a restart
is a real broker restart with its log intact (the chaos run needs that). Every broker started
here is tied to this process with ``--owner-pid``: if the process dies without cleaning up,
kafka.sh's watchdog stops the broker; it is also stopped at interpreter exit.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from devkit.ports import free_port, free_ports

REPO_ROOT = Path(__file__).resolve().parent.parent
KAFKA_SH = REPO_ROOT / "infra" / "kafka" / "kafka.sh"
JARS_DIR = REPO_ROOT / ".cache" / "kafka-jars"


class BrokerError(RuntimeError):
    """kafka.sh failed, or a broker is not what the caller needs."""


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


def kafka_version() -> str:
    """The Apache Kafka version of the resolved broker jars (e.g. '4.1.1'), or '?'."""
    jars = sorted(Path(os.environ.get("KAFKA_JARS_DIR", JARS_DIR)).glob("kafka_2.13-*.jar"))
    return jars[0].name.removeprefix("kafka_2.13-").removesuffix(".jar") if jars else "?"


def check_loopback(bootstrap: str) -> None:
    """Refuse anything but a loopback broker: dev tools never send traffic elsewhere."""
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


def wait_ready(bootstrap: str, timeout: float = 60.0) -> None:
    """Block until ``bootstrap`` answers a metadata request with at least one broker."""
    from confluent_kafka.admin import AdminClient

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if AdminClient({"bootstrap.servers": bootstrap, "log_level": 2}).list_topics(timeout=5).brokers:
                return
        except Exception as e:  # KafkaException while the broker boots
            last = e
        time.sleep(0.5)
    raise BrokerError(f"broker {bootstrap} not ready after {timeout:.0f}s: {last}")


@dataclass(eq=False)
class Broker:
    """One private broker: ``start()`` (again after ``stop()``: a restart), ``stop()`` (idempotent).

    ``extra_props`` is the *text* of extra server properties, appended after the template so its
    keys win (e.g. an mTLS ``listeners=...`` plus ``authorizer.class.name=...``). Keep the
    PLAINTEXT listener on ``port``: readiness is probed there.
    """

    data_dir: Path
    port: int
    controller_port: int
    extra_props: str | None = None
    version: str = field(default_factory=kafka_version)
    pid: int = 0
    start_seconds: float = 0.0
    startup_output: str = ""
    running: bool = False
    #: one line per kafka.sh call, for a harness's evidence
    log_lines: list[str] = field(default_factory=list)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def server_log(self) -> Path:
        return self.data_dir / "server.log"

    def _sh(self, *args: str, timeout: float) -> str:
        res = run_kafka_sh(*args, timeout=timeout)
        out = res.stdout.strip()
        self.log_lines.append(f"kafka.sh {args[0]} -> {res.returncode}: {out.splitlines()[-1] if out else ''}")
        if res.returncode != 0:
            raise BrokerError(f"kafka.sh {' '.join(args)} failed ({res.returncode}):\n{out[-4000:]}")
        return out

    def start(self, timeout: float = 300) -> float:
        """Start (or restart) on the same ports and data dir; returns once it answers metadata
        requests, with the seconds it took."""
        if not KAFKA_SH.exists():
            raise BrokerError(f"{KAFKA_SH} is missing: pass a running broker instead")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = ["start", "--port", str(self.port), "--controller-port", str(self.controller_port),
                "--data-dir", str(self.data_dir), "--owner-pid", str(os.getpid())]  # fmt: skip
        if self.extra_props is not None:
            extra = self.data_dir / "extra.properties"
            extra.write_text(self.extra_props if self.extra_props.endswith("\n") else self.extra_props + "\n")
            args += ["--extra-props", str(extra)]
        t0 = time.monotonic()
        out = self._sh(*args, timeout=timeout)
        if "already running" in out:
            raise BrokerError(f"a broker is already running with data dir {self.data_dir}:\n{out}")
        self.start_seconds = time.monotonic() - t0
        self.startup_output = out
        self.pid = int((self.data_dir / "kafka.pid").read_text().strip())
        if not self.running:
            atexit.register(self.stop)
        self.running = True
        return self.start_seconds

    def stop(self, timeout: float = 180) -> float:
        """``kafka.sh stop`` (SIGTERM, SIGKILL after its timeout); returns the seconds it took."""
        if not self.running:
            return 0.0
        self.running = False
        atexit.unregister(self.stop)
        t0 = time.monotonic()
        self._sh("stop", "--data-dir", str(self.data_dir), timeout=timeout)
        return time.monotonic() - t0

    def close(self, keep: bool = False) -> None:
        """Stop it if running (best effort: the owner-pid watchdog is the last resort) and remove
        its data dir unless ``keep``."""
        try:
            self.stop()
        except (BrokerError, subprocess.TimeoutExpired) as exc:
            self.log_lines.append(f"stop failed: {exc}")
        if not keep:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def new_broker(
    data_dir: str | os.PathLike[str] | None = None,
    extra_props: str | None = None,
    *,
    label: str = "dev",
    port: int | None = None,
    controller_port: int | None = None,
) -> Broker:
    """A broker on free ports (or the given ones), not started; ``data_dir`` None: a fresh
    ``/tmp/pit-<label>-kafka-*``."""
    data = Path(data_dir).resolve() if data_dir is not None else Path(tempfile.mkdtemp(prefix=f"pit-{label}-kafka-"))
    if port is None or controller_port is None:
        picked = free_ports(3)
        port = port or next(p for p in picked if p != controller_port)
        controller_port = controller_port or next(p for p in picked if p != port)
    return Broker(data, port, controller_port, extra_props)


def start_broker(
    data_dir: str | os.PathLike[str],
    extra_props: str | None = None,
    *,
    port: int | None = None,
    controller_port: int | None = None,
    timeout: float = 300,
) -> Broker:
    """Start a private broker in ``data_dir`` (see ``Broker``); returns it running."""
    b = new_broker(data_dir, extra_props, port=port, controller_port=controller_port)
    b.start(timeout)
    return b


@contextlib.contextmanager
def broker(existing: str | None = None, *, label: str = "dev", say: bool = True) -> Iterator[str]:
    """Yield a bootstrap string: ``existing`` (loopback only) as is, or a private broker for the
    block's lifetime (stopped and removed at the end, also on failure)."""
    if existing:
        check_loopback(existing)
        wait_ready(existing, timeout=30)
        yield existing
        return
    b = new_broker(label=label)
    try:
        if say:
            print(f"[{label}] starting a private Kafka broker on {b.bootstrap} (data {b.data_dir})", flush=True)
        b.start(timeout=600)
        yield b.bootstrap
    finally:
        b.close()


__all__ = ["JARS_DIR", "KAFKA_SH", "REPO_ROOT", "Broker", "BrokerError", "broker", "check_loopback", "free_port",
           "kafka_version", "new_broker", "run_kafka_sh", "start_broker", "wait_ready"]  # fmt: skip
