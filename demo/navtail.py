"""The NAV updates a demo run produced, read live from ``pit.v1.acct.nav_update``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pit.envelope.v1.envelope_pb2 import EventEnvelope
from pit.events.v1.events_pb2 import NAVUpdateEvent

from apps import nav
from devkit.tail import Tail


@dataclass(frozen=True)
class NavRecord:
    envelope: EventEnvelope
    nav: NAVUpdateEvent
    partition: int
    offset: int


class NavTail:
    """Reads the NAV topic from the beginning of every partition, incrementally, keeping the NAV
    updates whose envelope passes ``keep`` (e.g. one run's series)."""

    def __init__(self, bootstrap: str, keep: Callable[[EventEnvelope], bool], topic: str = nav.NAV) -> None:
        self.records: list[NavRecord] = []
        self.by_cause: dict[str, list[NavRecord]] = {}
        self._keep = keep
        self._tail = Tail(bootstrap, topic)

    def poll(self, timeout: float = 0.2, max_seconds: float = 1.0) -> int:
        """Read what is there now; returns how many kept records arrived."""
        kept = 0
        for r in self._tail.poll(timeout, max_seconds):
            env = r.envelope
            if not self._keep(env):
                continue
            rec = NavRecord(env, NAVUpdateEvent.FromString(env.payload), r.partition, r.offset)
            self.records.append(rec)
            self.by_cause.setdefault(env.causation_id, []).append(rec)
            kept += 1
        return kept

    def close(self) -> None:
        self._tail.close()
