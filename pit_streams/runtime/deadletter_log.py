"""Dead letters in the log, rate-limited: one line per reason per interval.

A refusal used to show only in ``/metrics`` and the final summary. Logging each one would
drown the log when a producer sends thousands of bad records, so per reason the first dead
letter is logged at once, and further ones in the same interval are counted and reported in
one line (the count and the first example's coordinates) once the interval is over.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("pit_streams.dead_letters")

INTERVAL_S = 10.0


@dataclass
class _Window:
    started: float
    count: int  # dead letters in this window after the one logged when it opened
    first: str  # coordinates and detail of the first of them


class DeadLetterLog:
    def __init__(self, interval_s: float = INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval_s = interval_s
        self._clock = clock
        self._windows: dict[str, _Window] = {}

    def note(self, reason: str, coordinates: str, detail: str) -> None:
        """One dead letter of ``reason`` refused at ``coordinates`` (``topic[p]@offset``)."""
        detail = _one_line(detail)
        now = self._clock()
        window = self._windows.get(reason)
        if window is not None and now - window.started >= self._interval_s:
            self._report(reason, window)
            window = None
        if window is None:
            self._windows[reason] = _Window(now, 0, "")
            log.error("dead letter [%s] %s: %s (more of this reason are counted for %.0f s)", reason,
                        coordinates, detail, self._interval_s)
            return
        if not window.count:
            window.first = f"{coordinates}: {detail}"
        window.count += 1

    def tick(self) -> None:
        """Report every interval that is over (called once per batch)."""
        now = self._clock()
        for reason, window in list(self._windows.items()):
            if now - window.started >= self._interval_s:
                self._report(reason, window)
                del self._windows[reason]

    def _report(self, reason: str, window: _Window) -> None:
        if window.count:
            log.error("dead letter [%s]: %d more in %.0f s, the first at %s", reason, window.count,
                        self._interval_s, window.first)


def _one_line(text: str, limit: int = 300) -> str:
    """A detail may quote refused bytes: one escaped line, so a record cannot forge log lines."""
    escaped = text.encode("unicode_escape").decode("ascii")
    return escaped if len(escaped) <= limit else escaped[:limit] + "..."
