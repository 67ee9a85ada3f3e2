"""The demo's voice: timestamped progress lines, and its one error type."""

from __future__ import annotations

import time

_T0 = time.monotonic()


def say(line: str) -> None:
    print(f"[demo {time.monotonic() - _T0:6.1f}s] {line}", flush=True)


def elapsed() -> float:
    return time.monotonic() - _T0


class DemoError(Exception):
    pass
