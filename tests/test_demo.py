"""``make demo`` end to end: the slice runs on its own private broker and ends with a verify."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(300)
def test_demo_runs_and_ends_with_a_passing_verify(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PIT_KAFKA_BOOTSTRAP"}
    env["PIT_ANALYTICS_OUT"] = str(tmp_path / "nav.png")
    done = subprocess.run([sys.executable, "-m", "demo", "--fills", "400", "--rate", "400"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "all 8 cells match the NAV computed offline" in done.stdout
    verify = [line for line in done.stdout.splitlines() if "pit-streams verify -A apps.nav:" in line]
    assert len(verify) == 1 and "verify OK: 400 input(s) replayed, 400 output(s)" in verify[0], done.stdout[-2000:]
