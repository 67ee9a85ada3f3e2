"""Plain counters on the hot path; ``observe`` turns them into Prometheus metrics at scrape time."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

HANDLER_BUCKETS_S = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0)
LAG_BUCKETS_S = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0, 3600.0)
CHECKPOINT_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0)


@dataclass
class Histogram:
    """Counts per bucket (not cumulative; ``observe`` is a bisect and an add on the hot path)."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    observations: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        self.observations += 1

    def observe_all(self, values: Iterable[float]) -> None:
        """``observe`` each of ``values`` (a batch's worth, without a call per value)."""
        counts, bounds = self.counts, self.bounds
        for value in values:
            counts[bisect_left(bounds, value)] += 1
            self.total += value
            self.observations += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, count)`` pairs as Prometheus wants them, ending with ``+Inf``."""
        out, running = [], 0
        for bound, count in zip([*map(str, self.bounds), "+Inf"], self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


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
    # Restored stores behind their group's committed offsets, per source partition (runtime/state_gap.py).
    state_gaps: int = 0
    # Standby stores (docs/adr/0012): partitions kept warm, changelog records applied to them, and
    # offsets between them and the changelog's end (None: not known, or the worker keeps none).
    standby_partitions: int = 0
    standby_records: int = 0
    standby_lag_records: int | None = None
    committed_offsets: dict[str, int] = field(default_factory=dict)
    end_offsets: dict[str, int] = field(default_factory=dict)
    healthy: bool = True
    ready: bool = False
    unhealthy_reason: str = ""
    handler_latency: Histogram = field(default_factory=lambda: Histogram(HANDLER_BUCKETS_S))
    # Input envelope ts to the commit that made its outcome durable.
    end_to_end_lag: Histogram = field(default_factory=lambda: Histogram(LAG_BUCKETS_S))
    # A committed checkpoint from its transaction sent to its stores written; and the part of that
    # the loop spent waiting for it, once done with the batch handled meanwhile (ADR 0001: the
    # checkpoint, not the handlers, paces the loop where the wait is most of the duration).
    checkpoint_duration: Histogram = field(default_factory=lambda: Histogram(CHECKPOINT_BUCKETS_S))
    checkpoint_wait: Histogram = field(default_factory=lambda: Histogram(CHECKPOINT_BUCKETS_S))
    # Input ts (ms) of records handled since the last commit; observed into end_to_end_lag by it.
    pending_input_ts_ms: list[int] = field(default_factory=list)

    def observe_handler(self, seconds: float) -> None:
        self.handler_calls += 1
        self.handler_seconds_total += seconds
        self.handler_latency.observe(seconds)

    def committed_now(self, now_ms: int, input_ts_ms: list[int]) -> None:
        """The batch of inputs stamped ``input_ts_ms`` committed at ``now_ms``."""
        self.end_to_end_lag.observe_all(max(0, now_ms - ts_ms) / 1000 for ts_ms in input_ts_ms)

    def not_committed(self) -> None:
        """The batch was abandoned: its records are handled again, and measured then."""
        self.pending_input_ts_ms.clear()

    def mark_unhealthy(self, reason: str) -> None:
        self.healthy = False
        self.unhealthy_reason = reason
