"""A restored store checked against its group's committed offsets (ADR 0003, "A store behind its group").

Every checkpoint writes each source partition's next offset into the changelog (``o/{topic}``) in
the same transaction as the group's offset, so a store restored from the changelog reflects at
least what the group had committed when the restore began. A store behind that means records the
group counts as handled whose state and dedupe marks the changelog no longer holds: it was recreated
or truncated, retention deleted them (``compact,delete``), or an operator moved the group's offsets
forward on purpose. The worker cannot tell these apart, so it says so and counts it, and handling
goes on from the committed offset (what the group asks for) instead of silently.

The group's offsets are read *before* the restore reads the changelog: a commit seen then has its
changelog records below any end the restore reads to, whereas one made during the restore (by the
partition's new owner, while this worker has yet to learn it lost it) may not. (librdkafka's reader
reads to the high watermark, waiting out open transactions; aiokafka's ends at the last stable
offset, which is the high watermark there because the partition's transactional id was taken over,
completing its last transaction, before the restore began: ADR 0003.)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from pit_streams.runtime.metrics import Metrics
from pit_streams.transport.base import TopicPartition, Transport, TransportError

log = logging.getLogger("pit_streams.worker")


async def group_offsets(transport: Transport, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int] | None:
    """The group's committed offsets of ``tps`` (read before their stores restore); ``None`` when
    they cannot be read — the check is then skipped, it is not a step of the restore."""
    if not tps:
        return {}
    try:
        return await transport.committed(tps)
    except TransportError as exc:
        log.warning("the state of %s will not be compared with the group's committed offsets: %s",
                    ", ".join(map(str, tps)), exc)
        return None


def state_gaps(
    reflected: Mapping[str, int], committed: Mapping[TopicPartition, int]
) -> dict[TopicPartition, int | None]:
    """The partitions whose committed offset is past what the store reflects, with what it
    reflects (``None``: no offset of that topic at all). A store ahead of its group (an expired
    or lost group offset) is no gap: those records are skipped as applied."""
    return {tp: reflected.get(tp.topic) for tp, offset in committed.items() if reflected.get(tp.topic, 0) < offset}


def report_state_gaps(
    committed: Mapping[TopicPartition, int] | None, reflected: Mapping[str, int], *, changelog: str, metrics: Metrics,
) -> dict[TopicPartition, int | None]:
    """Compare a restored store's ``reflected`` source offsets with the group's ``committed`` ones
    (of one partition number's topics, read before the restore); log and count each gap."""
    gaps = state_gaps(reflected, committed or {})
    for tp, reflects in sorted(gaps.items()):
        metrics.state_gaps += 1
        offset = committed[tp] if committed else 0
        if reflects is None:
            # Also what a compact,delete changelog leaves of a partition idle for longer than its
            # retention: no offset to go back to, so none is suggested.
            log.warning(
                "%s: the group committed offset %d, but the state restored from %s holds nothing of"
                " %s: its state and dedupe marks start empty here (the changelog was recreated, or"
                " retention deleted this partition's records). Handling goes on from %d",
                tp, offset, changelog, tp.topic, offset,
            )
            continue
        log.error(
            "%s: the group committed offset %d, but the state restored from %s reflects only the records"
            " below %d: records %d..%d were handled and their state and dedupe marks are not in the changelog"
            " (truncated, or recreated), or the group's offsets were moved forward by hand. Handling goes"
            " on from %d without them; if that is wrong, stop the group and restore the changelog, or move"
            " the group's offsets back to %d (kafka-consumer-groups --reset-offsets --to-offset %d)",
            tp, offset, changelog, reflects, reflects, offset - 1, offset, reflects, reflects,
        )
    return gaps
