"""``pit-streams worker`` as a real subprocess: started with its own data dir, health port, env
and log file; ready when its ``/readyz`` answers 200 (in its group, every assigned partition's
store restored) — never by matching log lines; signalled by pid (only processes started here).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from devkit.broker import REPO_ROOT
from devkit.ports import free_port

_LIVE: set[WorkerProcess] = set()


class WorkerError(RuntimeError):
    """A worker exited, or did not become ready, when the caller needed it."""


@dataclass
class Exit:
    spawn: int
    pid: int
    returncode: int
    cause: str  # "SIGKILL by harness", "SIGTERM by harness", "exited by itself"
    uptime_s: float


def pit_streams_cmd() -> list[str]:
    """The CLI of this interpreter's environment (its console script, else ``-m pit_streams.cli``)."""
    exe = Path(sys.executable).parent / "pit-streams"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "pit_streams.cli"]


def http_get(port: int, path: str, timeout: float = 1.0) -> tuple[int, bytes] | None:
    """``GET path`` on 127.0.0.1:port: (status, body), or None when nothing answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except OSError:
        return None
    finally:
        conn.close()


@dataclass(eq=False)
class WorkerProcess:
    """One worker slot (its own data dir and log; ``start`` again after it exits).

    ``app`` is the ``-A`` spec (``apps.nav``, ``bench.chaos.app:pit``). ``health_port`` None
    picks a free port at each start (``-1`` disables it, and with it ``ready``). ``env`` is laid
    over this process's environment, ``drop_env`` removed from it; ``args`` go after the
    worker's own options; ``cli_args`` before ``worker`` (e.g. ``--log-level``).
    """

    name: str
    app: str
    bootstrap: str
    data_dir: Path
    log_path: Path
    health_port: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    drop_env: Sequence[str] = ("PIT_KAFKA_BOOTSTRAP",)
    args: list[str] = field(default_factory=list)
    cli_args: list[str] = field(default_factory=list)
    #: the process's stdout, when not the log file (e.g. the demo shows one worker's table live)
    stdout: int | None = None
    spawns: int = 0
    exits: list[Exit] = field(default_factory=list)
    port: int = -1
    started_at: float = 0.0
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _signalled: str = ""
    _log_offset: int = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    def command(self) -> list[str]:
        return [*pit_streams_cmd(), *self.cli_args, "worker", "-A", self.app, "--broker", self.bootstrap,
                "--data-dir", str(self.data_dir), "--health-port", str(self.port), *self.args]  # fmt: skip

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in self.drop_env}
        # This checkout's pit_streams, also when the interpreter's editable install points at
        # another checkout: a console script does not put its working directory on sys.path.
        path = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        return {**env, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path, **self.env}

    def start(self, *, fresh_disk: bool = False) -> None:
        """Spawn the worker; ``fresh_disk``: on an empty data dir (it restores from the changelog)."""
        if self.alive():
            raise WorkerError(f"{self.name} is already running (pid {self.pid})")
        self.reap()
        self.spawns += 1
        if fresh_disk:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.port = free_port() if self.health_port is None else self.health_port
        with self.log_path.open("ab") as log:
            self._log_offset = log.tell()
            log.write(f"\n=== {time.strftime('%H:%M:%S')} {self.name} spawn #{self.spawns}"
                      f"{' (fresh disk)' if fresh_disk else ''}: {' '.join(self.command())}\n".encode())  # fmt: skip
            log.flush()
            self._proc = subprocess.Popen(
                self.command(), cwd=REPO_ROOT, env=self.environment(), stdin=subprocess.DEVNULL,
                stdout=log if self.stdout is None else self.stdout, stderr=log, start_new_session=True,
            )  # fmt: skip
        self.started_at = time.monotonic()
        self._signalled = ""
        _LIVE.add(self)

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def ready(self) -> bool:
        """The current process answers 200 on ``/readyz``."""
        if not self.alive() or self.port < 0:
            return False
        got = http_get(self.port, "/readyz")
        return got is not None and got[0] == 200

    def metrics(self) -> str:
        """The current process's ``/metrics`` text ("" when it does not answer)."""
        got = http_get(self.port, "/metrics", timeout=5.0) if self.alive() and self.port >= 0 else None
        return got[1].decode("utf-8", "replace") if got is not None and got[0] == 200 else ""

    def wait_ready(self, timeout: float = 120.0, check: Callable[[], None] | None = None) -> float:
        """Block until ``/readyz`` answers 200; returns the seconds since the spawn. Raises
        ``WorkerError`` when the process exits first or ``timeout`` passes (``check`` runs each
        round, e.g. to fail early when another process died)."""
        if self.port < 0:
            raise WorkerError(f"{self.name} runs without a health port: nothing to wait on")
        deadline = time.monotonic() + timeout
        while not self.ready():
            if not self.alive():
                raise WorkerError(f"{self.name} exited with {self.returncode} before /readyz said ready:\n"
                                  f"{self.log_tail()}")  # fmt: skip
            if time.monotonic() > deadline:
                raise WorkerError(f"{self.name} not ready on /readyz after {timeout:.0f}s:\n{self.log_tail()}")
            if check is not None:
                check()
            time.sleep(0.05)  # an HTTP probe of another process: there is no event to await
        return time.monotonic() - self.started_at

    def output_since_spawn(self) -> bytes:
        """What the current (or last) process wrote to the log."""
        with self.log_path.open("rb") as log:
            log.seek(self._log_offset)
            return log.read()

    def output(self) -> str:
        """``output_since_spawn`` as text."""
        return self.output_since_spawn().decode("utf-8", "replace")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def reap(self) -> Exit | None:
        """Record the exit of a process that has ended (once)."""
        if self._proc is None or self._proc.poll() is None:
            return None
        rc = self._proc.returncode
        ex = Exit(self.spawns, self._proc.pid, rc, self._signalled or "exited by itself",
                  time.monotonic() - self.started_at)  # fmt: skip
        self.exits.append(ex)
        with self.log_path.open("ab") as log:
            stamp = time.strftime("%H:%M:%S")
            log.write(f"=== {stamp} {self.name} pid {ex.pid} ended: rc={rc} ({ex.cause})\n".encode())
        self._proc = None
        _LIVE.discard(self)
        return ex

    def signal(self, sig: signal.Signals) -> None:
        if self.alive():
            assert self._proc is not None
            if sig in (signal.SIGTERM, signal.SIGKILL):
                self._signalled = f"{sig.name} by harness"
            os.kill(self._proc.pid, sig)

    def pause(self) -> None:
        """SIGSTOP (the process keeps its sockets; the group forgets it after the session timeout)."""
        if not self.alive():
            raise WorkerError(f"{self.name} is not running: nothing to pause")
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after ``pause``."""
        self.signal(signal.SIGCONT)

    def wait(self, timeout: float) -> Exit:
        """Wait for the current process to end (the last exit when none runs)."""
        if self._proc is None:
            if self.exits:
                return self.exits[-1]
            raise WorkerError(f"{self.name} was never started")
        self._proc.wait(timeout)
        ex = self.reap()
        assert ex is not None
        return ex

    def kill(self) -> Exit:
        """SIGKILL and reap."""
        self.signal(signal.SIGKILL)
        return self.wait(30)

    def terminate(self, timeout: float = 60) -> Exit:
        """SIGTERM, wait for the clean exit (SIGKILL if it does not come within ``timeout``)."""
        self.signal(signal.SIGCONT)  # a paused process cannot act on SIGTERM
        self.signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            ex = self.wait(30)
            ex.cause = f"did not exit within {timeout:.0f}s of SIGTERM; SIGKILLed"
            return ex

    def unexpected_exits(self) -> list[Exit]:
        """Exits nobody here caused, or a SIGTERM that did not end cleanly (rc != 0)."""
        return [e for e in self.exits
                if e.cause == "exited by itself" or (e.cause.startswith("SIGTERM") and e.returncode != 0)
                or e.cause.startswith("did not exit")]  # fmt: skip


def worker(name: str, app: str, bootstrap: str, work_dir: Path, *, env: Mapping[str, str] | None = None,
           args: Sequence[str] = (), health_port: int | None = None) -> WorkerProcess:  # fmt: skip
    """A worker slot under ``work_dir`` (``data-<name>/``, ``<name>.log``), not started."""
    return WorkerProcess(name, app, bootstrap, work_dir / f"data-{name}", work_dir / f"{name}.log",
                         health_port=health_port, env=dict(env or {}), args=list(args))  # fmt: skip


def stop_all() -> None:
    """SIGKILL every worker this process started that still runs (error paths, atexit)."""
    for w in list(_LIVE):
        with contextlib.suppress(Exception):  # best effort
            w.kill()
