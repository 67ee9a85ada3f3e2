"""A restored store checked against its group's committed offsets (ADR 0003, "A store behind its group").

Every checkpoint writes each source partition's next offset into the changelog (``o/{topic}``) in
the same transaction as the group's offset, so a store restored from the changelog reflects at
least what the group committed. A store behind it means records the group counts as handled whose
state and dedupe marks the changelog no longer holds: the changelog was recreated or truncated,
retention deleted them (``compact,delete``), or an operator moved the group's offsets forward on
purpose. The worker cannot tell these apart, so it says so loudly and counts it, and handling goes
on from the committed offset (what the group asks for) instead of silently.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from pit_streams.runtime.metrics import Metrics
from pit_streams.transport.base import TopicPartition, Transport, TransportError

log = logging.getLogger("pit_streams.worker")


def state_gaps(reflected: Mapping[str, int], committed: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
    """The partitions whose committed offset is past what the store reflects, with what it
    reflects (0: nothing of that topic). A store ahead of its group (an expired or lost group
    offset) is no gap: those records are skipped as applied."""
    return {tp: reflected.get(tp.topic, 0) for tp, offset in committed.items() if reflected.get(tp.topic, 0) < offset}


async def report_state_gaps(
    transport: Transport, tps: Sequence[TopicPartition], reflected: Mapping[str, int], *, changelog: str,
    metrics: Metrics,
) -> dict[TopicPartition, int]:
    """Compare a restored store's ``reflected`` source offsets with the group's for ``tps`` (one
    partition number's topics); log and count each gap. Returns the gaps."""
    try:
        committed = await transport.committed(tps)
    except TransportError as exc:  # a check, not a step of the restore: the partition still reads on
        log.warning("could not compare the state of %s with the group's committed offsets: %s",
                    ", ".join(map(str, tps)), exc)
        return {}
    gaps = state_gaps(reflected, committed)
    for tp, reflects in sorted(gaps.items()):
        metrics.state_gaps += 1
        log.error(
            "%s: the group committed offset %d, but the state restored from %s reflects only the records below %d:"
            " records %d..%d were handled and their state and dedupe marks are not in the changelog"
            " (recreated or truncated, or deleted by retention), or the group's offsets were moved"
            " forward by hand. Handling goes on from %d without them; if that is wrong, stop the"
            " group and restore the changelog, or move the group's offsets back to %d"
            " (kafka-consumer-groups --reset-offsets --to-offset %d)",
            tp, committed[tp], changelog, reflects, reflects, committed[tp] - 1, committed[tp], reflects, reflects,
        )
    return gaps
