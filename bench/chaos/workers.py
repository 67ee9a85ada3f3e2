"""The chaos run's workers: ``pit-streams worker -A bench.chaos.app:pit`` subprocesses
(``devkit.workers.WorkerProcess``: started, SIGTERMed, SIGKILLed, SIGSTOPped by pid, ready on
``/readyz``), one log file per worker slot for the evidence."""

from __future__ import annotations

import re
from pathlib import Path

from bench.chaos.app import GROUP_ENV, TTL_ENV
from devkit.workers import Exit, WorkerProcess, stop_all

__all__ = ["Exit", "WorkerProc", "stop_all"]

_INTERESTING = re.compile(r"^=== |\b(ERROR|WARNING|CRITICAL|Traceback)\b|^pit-streams: |Error\b|^\s+File ")


class WorkerProc(WorkerProcess):
    """One chaos worker slot of consumer group ``group``."""

    def __init__(self, name: str, group: str, bootstrap: str, data_dir: Path, catalog: Path, log_path: Path,
                 transport: str = "confluent", guarantee: str = "at_least_once",
                 dedupe_ttl_s: float | None = None) -> None:  # fmt: skip
        env = {GROUP_ENV: group, "PIT_GUARANTEE": guarantee}
        if dedupe_ttl_s is not None:
            env[TTL_ENV] = str(dedupe_ttl_s)
        # ``--guarantee`` only when asked: a runtime without the option then fails loudly (an
        # argparse error) instead of quietly running at-least-once.
        args = ["--transport", transport, "--catalog", str(catalog),
                *(["--guarantee", guarantee] if guarantee != "at_least_once" else [])]  # fmt: skip
        super().__init__(name, "bench.chaos.app:pit", bootstrap, data_dir, log_path, env=env,
                         drop_env=("PIT_KAFKA_BOOTSTRAP", TTL_ENV), args=args)  # fmt: skip
        self.group = group
        self.guarantee = guarantee

    def log_excerpt(self, limit: int = 40) -> list[str]:
        """ERROR/WARNING/traceback lines and the spawn/exit markers, for the report."""
        if not self.log_path.exists():
            return []
        lines = self.log_path.read_text(errors="replace").splitlines()
        picked = [ln for ln in lines if _INTERESTING.search(ln)]
        if len(picked) > limit:
            picked = [*picked[: limit // 2], f"... {len(picked) - limit} more ...", *picked[-limit // 2 :]]
        return [ln[:400] for ln in picked]
