"""Workers as real subprocesses: ``python -m pit_streams.cli worker -A bench.chaos.app:pit ...``,
started, SIGTERMed and SIGKILLed by pid (only the processes this harness started), with their
output appended to one log file per worker slot for the evidence."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.chaos.app import GROUP_ENV, TTL_ENV
from bench.chaos.broker import REPO

_INTERESTING = re.compile(r"^=== |\b(ERROR|WARNING|CRITICAL|Traceback)\b|^pit-streams: |Error\b|^\s+File ")
_LIVE: set[WorkerProc] = set()


@dataclass
class Exit:
    spawn: int
    pid: int
    returncode: int
    cause: str  # "SIGKILL by harness", "SIGTERM by harness", "exited by itself"
    uptime_s: float


@dataclass(eq=False)
class WorkerProc:
    """One worker slot (its own data dir and log); ``start`` again after it exits."""

    name: str
    group: str
    bootstrap: str
    data_dir: Path
    catalog: Path
    log_path: Path
    transport: str = "confluent"
    guarantee: str = "at_least_once"  # | "exactly_once" (``--guarantee``)
    dedupe_ttl_s: float | None = None  # the app's dedupe TTL (None: the app's default)
    spawns: int = 0
    exits: list[Exit] = field(default_factory=list)
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _started_at: float = 0.0
    _signalled: str = ""
    _log_offset: int = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "pit_streams.cli", "worker", "-A", "bench.chaos.app:pit",
            "--broker", self.bootstrap, "--data-dir", str(self.data_dir), "--health-port", "-1",
            "--transport", self.transport, "--catalog", str(self.catalog),
            # Only when asked: a runtime without the option then fails loudly (an argparse error)
            # instead of quietly running at-least-once.
            *(["--guarantee", self.guarantee] if self.guarantee != "at_least_once" else []),
        ]  # fmt: skip

    def start(self, *, fresh_disk: bool = False) -> None:
        """Spawn the worker; ``fresh_disk``: on an empty data dir (it restores from the changelog)."""
        assert not self.alive(), f"{self.name} is already running"
        self.reap()
        self.spawns += 1
        if fresh_disk:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, GROUP_ENV: self.group, "PYTHONUNBUFFERED": "1", "PIT_GUARANTEE": self.guarantee}
        env.pop("PIT_KAFKA_BOOTSTRAP", None)
        env.pop(TTL_ENV, None)
        if self.dedupe_ttl_s is not None:
            env[TTL_ENV] = str(self.dedupe_ttl_s)
        with self.log_path.open("ab") as log:
            self._log_offset = log.tell()
            log.write(f"\n=== {time.strftime('%H:%M:%S')} {self.name} spawn #{self.spawns}"
                      f"{' (fresh disk)' if fresh_disk else ''}: "
                      f"{' '.join(self.command()[1:])}\n".encode())  # fmt: skip
            log.flush()
            self._proc = subprocess.Popen(self.command(), cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        self._started_at = time.monotonic()
        self._signalled = ""
        _LIVE.add(self)

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def output_since_spawn(self) -> bytes:
        with self.log_path.open("rb") as log:
            log.seek(self._log_offset)
            return log.read()

    def ready(self) -> bool:
        """The current process logged that it consumes (its signal handlers are installed by then)."""
        return self.alive() and b") consuming " in self.output_since_spawn()

    def partitions_ready(self) -> int:
        """How many partition stores the current process restored ("partition N ready" lines)."""
        return self.output_since_spawn().count(b" ready: ") if self.alive() else 0

    def reap(self) -> Exit | None:
        """Record the exit of a process that has ended (once)."""
        if self._proc is None or self._proc.poll() is None:
            return None
        rc = self._proc.returncode
        cause = self._signalled or "exited by itself"
        ex = Exit(self.spawns, self._proc.pid, rc, cause, time.monotonic() - self._started_at)
        self.exits.append(ex)
        with self.log_path.open("ab") as log:
            log.write(f"=== {time.strftime('%H:%M:%S')} {self.name} pid {ex.pid} ended: rc={rc} ({cause})\n".encode())
        self._proc = None
        _LIVE.discard(self)
        return ex

    def signal(self, sig: signal.Signals) -> None:
        if self.alive():
            assert self._proc is not None
            self._signalled = f"{sig.name} by harness"
            os.kill(self._proc.pid, sig)

    def pause(self) -> None:
        """SIGSTOP (the process keeps its sockets, the group forgets it after the session timeout)."""
        assert self._proc is not None and self.alive()
        os.kill(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after ``pause``."""
        if self.alive():
            assert self._proc is not None
            os.kill(self._proc.pid, signal.SIGCONT)

    def kill(self) -> Exit:
        """SIGKILL and reap."""
        self.signal(signal.SIGKILL)
        return self.wait(30)

    def terminate(self, timeout: float = 60) -> Exit:
        """SIGTERM, wait for the clean exit (SIGKILL if it does not come within ``timeout``)."""
        self.signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            ex = self.wait(30)
            ex.cause = f"did not exit within {timeout:.0f}s of SIGTERM; SIGKILLed"
            return ex

    def wait(self, timeout: float) -> Exit:
        assert self._proc is not None
        self._proc.wait(timeout)
        ex = self.reap()
        assert ex is not None
        return ex

    def unexpected_exits(self) -> list[Exit]:
        """Exits the harness did not cause, or a SIGTERM that did not end cleanly (rc != 0)."""
        return [e for e in self.exits
                if e.cause == "exited by itself" or (e.cause.startswith("SIGTERM") and e.returncode != 0)
                or e.cause.startswith("did not exit")]  # fmt: skip

    def log_excerpt(self, limit: int = 40) -> list[str]:
        """ERROR/WARNING/traceback lines and the spawn/exit markers, for the report."""
        if not self.log_path.exists():
            return []
        lines = self.log_path.read_text(errors="replace").splitlines()
        picked = [ln for ln in lines if _INTERESTING.search(ln)]
        if len(picked) > limit:
            picked = [*picked[: limit // 2], f"... {len(picked) - limit} more ...", *picked[-limit // 2 :]]
        return [ln[:400] for ln in picked]


def stop_all() -> None:
    """SIGKILL every worker this process started that is still running (error paths, atexit)."""
    for w in list(_LIVE):
        with contextlib.suppress(Exception):  # best effort
            w.kill()
