"""Which runtime a run measured. Workers are subprocesses importing the working tree when they
spawn, so a tree edited during a run would mix versions: each scenario records this fingerprint
before and after, and flags a change."""

from __future__ import annotations

import hashlib
import subprocess
from typing import Any

from devkit.broker import REPO_ROOT as REPO


def _git(*args: str) -> str:
    res = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False, timeout=30)
    return res.stdout.rstrip("\n") if res.returncode == 0 else "?"


def runtime_fingerprint() -> dict[str, Any]:
    """sha256 over pit_streams/ and apps/ sources, the git HEAD, and which of them are modified."""
    h = hashlib.sha256()
    for path in sorted([*(REPO / "pit_streams").rglob("*.py"), *(REPO / "apps").glob("*.py")]):
        h.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    dirty = [ln[3:] for ln in _git("status", "--porcelain", "--", "pit_streams", "apps").splitlines() if ln]
    head = _git("rev-parse", "--short", "HEAD").strip()
    return {"sources_sha256": h.hexdigest()[:16], "git_head": head, "modified": dirty}
