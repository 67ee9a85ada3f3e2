"""Plain counters on the hot path; ``observe`` turns them into Prometheus metrics at scrape time."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Metrics:
    processed: int = 0
    deduped: int = 0
    emitted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    handler_retries: int = 0
    handler_seconds_total: float = 0.0
    handler_calls: int = 0
    batches: int = 0
    commits: int = 0
    committed_records: int = 0  # input records whose outcome (processed, deduped, dead letter) is committed
    delivery_failures: int = 0
    restored_records: int = 0
    committed_offsets: dict[str, int] = field(default_factory=dict)
    end_offsets: dict[str, int] = field(default_factory=dict)
    healthy: bool = True
    ready: bool = False
    unhealthy_reason: str = ""

    def mark_unhealthy(self, reason: str) -> None:
        self.healthy = False
        self.unhealthy_reason = reason
