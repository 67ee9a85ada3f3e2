"""Where a follower (``Transport.read_followed``) stands in each partition it reads: the one
piece of bookkeeping every transport's follower shares, so they agree on when a start means
"read on" and when it means "read again from here", and on what lag is."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pit_streams.transport.base import TopicPartition


@dataclass(slots=True)
class _Place:
    expected: int  # the start a caller passes next once it applied every record handed out
    position: int  # the next offset the reader hands out (past transaction markers once seen)
    end: int = -1  # the partition's end as the client last saw it (-1: not yet)


class FollowPlaces:
    """The partitions a follower reads and where it is in each."""

    def __init__(self) -> None:
        self._at: dict[TopicPartition, _Place] = {}

    def followed(self) -> list[TopicPartition]:
        return sorted(self._at)

    def plan(self, starts: Mapping[TopicPartition, int]) -> tuple[dict[TopicPartition, int], list[TopicPartition]]:
        """(partitions to read from a new offset, partitions to stop reading) for ``starts``;
        what follows assumes the caller does both.

        A start equal to where the records handed out ended reads on. Any other start is taken
        as it is: the caller's store is what it reflects (a store may have moved on while this
        follower did not read it, e.g. owned for a while), never this follower's memory."""
        seek = {tp: start for tp, start in starts.items() if (p := self._at.get(tp)) is None or p.expected != start}
        drop = [tp for tp in self._at if tp not in starts]
        for tp in drop:
            del self._at[tp]
        for tp, start in seek.items():
            self._at[tp] = _Place(start, start)
        return seek, drop

    def take(self, tp: TopicPartition, offset: int) -> bool:
        """Whether a fetched record is handed out: not if its partition is no longer followed,
        nor if it lies before the position (fetched before a re-read from a later start)."""
        place = self._at.get(tp)
        if place is None or offset < place.position:
            return False
        place.expected = place.position = offset + 1
        return True

    def at(self, tp: TopicPartition, position: int) -> None:
        """The reader's position in ``tp`` is ``position`` (past gaps and transaction markers)."""
        if (place := self._at.get(tp)) is not None and position > place.position:
            place.position = position

    def end(self, tp: TopicPartition, end: int) -> None:
        """``tp`` ends at ``end`` as the client last saw it."""
        if (place := self._at.get(tp)) is not None and end > place.end:
            place.end = end

    def position(self, tp: TopicPartition) -> int:
        """Where the reader of a followed partition is (to put it back after the client lost it)."""
        return self._at[tp].position

    def lag(self) -> dict[TopicPartition, int]:
        """Offsets between position and end, for the partitions whose end is known."""
        return {tp: max(0, p.end - p.position) for tp, p in self._at.items() if p.end >= 0}

    def clear(self) -> None:
        """Forget everything (the client's assignment was dropped): the next call starts afresh."""
        self._at.clear()
