"""The chaos run's Kafka: a private single-node broker driven with ``infra/kafka/kafka.sh``
(start / stop / restart on the SAME ports and data dir, so a restart is a real broker restart
with its log intact), or an existing loopback broker given with ``--broker`` (not restartable).

A private broker is tied to this process with ``--owner-pid``: if the harness dies without
cleaning up, kafka.sh's watchdog stops the broker.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

# One definition of the repo paths and loopback guards for every benchmark and chaos run.
from bench.broker import KAFKA_SH, REPO, check_loopback, free_port, run_kafka_sh

__all__ = ["CHAOS_PROPS", "KAFKA_SH", "REPO", "Broker", "check_loopback", "free_port"]


class Broker:
    """What a scenario needs from its broker. ``restartable`` only for a private one."""

    bootstrap: str
    restartable: bool = False
    data_dir: Path | None = None

    def stop_broker(self) -> float:
        raise RuntimeError(f"broker {self.bootstrap} is not ours: it cannot be stopped")

    def start_broker(self) -> float:
        raise RuntimeError(f"broker {self.bootstrap} is not ours: it cannot be started")

    def close(self) -> None:
        pass


class ExternalBroker(Broker):
    def __init__(self, bootstrap: str) -> None:
        check_loopback(bootstrap)
        self.bootstrap = bootstrap


#: ``--extra-props`` of every private chaos broker: a log cleaner that wakes up every 0.5 s.
CHAOS_PROPS = REPO / "infra" / "kafka" / "chaos.properties"


class PrivateBroker(Broker):
    """``kafka.sh start --port P --controller-port C --data-dir D --owner-pid <us> --extra-props X``."""

    restartable = True

    def __init__(self, label: str = "chaos", base_dir: Path | None = None,
                 extra_props: Path | None = CHAOS_PROPS) -> None:  # fmt: skip
        self.extra_props = extra_props
        self.port = free_port()
        self.controller_port = free_port()
        while self.controller_port == self.port:
            self.controller_port = free_port()
        self.data_dir = Path(tempfile.mkdtemp(prefix=f"pit-{label}-kafka-", dir=base_dir))
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.running = False
        self.log_lines: list[str] = []

    def _sh(self, *args: str, timeout: float = 300) -> str:
        res = run_kafka_sh(*args, timeout=timeout)
        out = res.stdout.strip()
        self.log_lines.append(f"kafka.sh {args[0]} -> {res.returncode}: {out.splitlines()[-1] if out else ''}")
        if res.returncode != 0:
            raise RuntimeError(f"kafka.sh {' '.join(args)} failed ({res.returncode}):\n{out[-3000:]}")
        return out

    def start_broker(self) -> float:
        """Start (or restart) on the same ports and data dir; returns the seconds it took."""
        t0 = time.monotonic()
        out = self._sh(
            "start",
            "--port", str(self.port),
            "--controller-port", str(self.controller_port),
            "--data-dir", str(self.data_dir),
            "--owner-pid", str(os.getpid()),
            *(["--extra-props", str(self.extra_props)] if self.extra_props else []),
        )  # fmt: skip
        if "already running" in out:
            raise RuntimeError(f"a broker already runs in {self.data_dir}: {out}")
        self.running = True
        return time.monotonic() - t0

    def stop_broker(self) -> float:
        """``kafka.sh stop`` (SIGTERM, SIGKILL after its timeout); returns the seconds it took."""
        t0 = time.monotonic()
        self._sh("stop", "--data-dir", str(self.data_dir), timeout=180)
        self.running = False
        return time.monotonic() - t0

    @property
    def server_log(self) -> Path:
        assert self.data_dir is not None
        return self.data_dir / "server.log"

    def close(self, keep: bool = False) -> None:
        if self.running:
            try:
                self.stop_broker()
            except Exception as exc:  # the owner-pid watchdog is the last resort
                self.log_lines.append(f"stop failed: {exc}")
        if not keep and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
