"""The chaos run's Kafka: a private single-node broker (``devkit.broker.Broker``: start / stop /
restart on the SAME ports and data dir, so a restart is a real broker restart with its log
intact), or an existing loopback broker given with ``--broker`` (not restartable)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from devkit.broker import REPO_ROOT, check_loopback, new_broker

#: Extra server properties of every private chaos broker: a log cleaner that wakes up every 0.5 s.
CHAOS_PROPS = REPO_ROOT / "infra" / "kafka" / "chaos.properties"


class Broker:
    """What a scenario needs from its broker. ``restartable`` only for a private one."""

    bootstrap: str
    restartable: bool = False
    data_dir: Path | None = None

    def stop_broker(self) -> float:
        raise RuntimeError(f"broker {self.bootstrap} is not ours: it cannot be stopped")

    def start_broker(self) -> float:
        raise RuntimeError(f"broker {self.bootstrap} is not ours: it cannot be started")

    def close(self, keep: bool = False) -> None:
        pass


class ExternalBroker(Broker):
    def __init__(self, bootstrap: str) -> None:
        check_loopback(bootstrap)
        self.bootstrap = bootstrap


class PrivateBroker(Broker):
    """A devkit broker with ``infra/kafka/chaos.properties``; seconds per start and stop."""

    restartable = True

    def __init__(self, label: str = "chaos", base_dir: Path | None = None,
                 extra_props: Path | None = CHAOS_PROPS) -> None:  # fmt: skip
        data_dir = None if base_dir is None else tempfile.mkdtemp(prefix=f"pit-{label}-kafka-", dir=base_dir)
        self._broker = new_broker(data_dir, extra_props.read_text() if extra_props else None, label=label)
        self.bootstrap = self._broker.bootstrap
        self.data_dir = self._broker.data_dir
        self.log_lines = self._broker.log_lines

    @property
    def running(self) -> bool:
        return self._broker.running

    @property
    def server_log(self) -> Path:
        return self._broker.server_log

    def start_broker(self) -> float:
        """Start (or restart) on the same ports and data dir; returns the seconds it took."""
        return self._broker.start()

    def stop_broker(self) -> float:
        """``kafka.sh stop`` (SIGTERM, SIGKILL after its timeout); returns the seconds it took."""
        return self._broker.stop()

    def close(self, keep: bool = False) -> None:
        self._broker.close(keep)
