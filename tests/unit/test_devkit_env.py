"""A worker subprocess runs this checkout's pit_streams, whichever checkout the interpreter's
editable install points at (a second clone sharing a virtualenv ran the other one's code)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from devkit.broker import REPO_ROOT
from devkit.workers import WorkerProcess


def test_a_worker_process_imports_the_checkout_it_belongs_to(tmp_path: Path) -> None:
    worker = WorkerProcess("w", "apps.nav", "127.0.0.1:9", tmp_path / "data", tmp_path / "w.log")
    # As the console script starts: from elsewhere, with the script's directory first on sys.path.
    probe = "import sys; sys.path[0] = sys.argv[1]; import pit_streams; print(pit_streams.__file__)"
    out = subprocess.run([sys.executable, "-c", probe, str(Path(sys.executable).parent)], cwd=tmp_path,
                         env=worker.environment(), capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()).resolve().is_relative_to(REPO_ROOT)
