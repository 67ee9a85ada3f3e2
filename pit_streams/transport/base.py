"""The seam between the runtime and a Kafka client: bytes in, bytes out, nothing else.

A transport knows nothing of envelopes or handlers. The runtime drives it in a strict
rhythm — poll a batch, queue sends, ``flush`` (every send acknowledged or an error),
``commit`` — so a transport never has to reason about what is safe to commit. A transport
never calls the runtime: partitions gained and lost come back from ``poll`` as a ``Polled``
(docs/adr/0007-record-path.md), and the runtime reacts to them in its own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from pit_streams.errors import PitStreamsError

Headers = list[tuple[str, bytes]]

# The largest record a client will hand to the broker; the topic's max.message.bytes is the real
# limit (1 MiB by default, 4 MiB on the dead-letter topic: see infra/topics.yaml).
MAX_RECORD_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True, order=True)
class TopicPartition:
    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]"


@dataclass(slots=True)
class Record:
    """One consumed record, exactly as the broker holds it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = field(default_factory=list)
    timestamp_ms: int = 0
    #: Why the client could not give this record's headers as text (a header name that is not
    #: UTF-8: Kafka allows any bytes), "" when it could. The runtime dead-letters such a record
    #: (``bad_header_name``) with the detail given here, never handles it.
    unreadable_headers: str = ""


def record_headers(raw: Iterable[tuple[str, bytes | None]] | None) -> Headers:
    """A consumed record's headers as the runtime types them: both Kafka clients return None for
    a header sent without a value, which becomes b"" here, where records enter, and nowhere else."""
    return [(k, v if v is not None else b"") for k, v in raw] if raw else []


class TransportError(PitStreamsError):
    """The client could not do what was asked (broker unreachable, topic missing, ...)."""


class DeliveryError(TransportError):
    """At least one queued send was not acknowledged by the broker; nothing may be committed.

    ``permanent``: every failure was one the broker will repeat for the same record (too large,
    invalid), not an outage; retrying the same batch cannot succeed.
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class ClientFailed(TransportError):
    """The Kafka client failed for good (e.g. its transactional id was taken over): the worker must
    exit and be restarted, since nothing it sends can succeed any more."""


class PartialCommit(TransportError):
    """Some partitions' transactions committed (``written``: their last changelog offsets), the
    others were aborted (``cause``). Each partition's state and offsets stay atomic."""

    def __init__(self, written: dict[int, int], cause: BaseException) -> None:
        super().__init__(str(cause))
        self.written = written
        self.cause = cause


class Fenced(TransportError):
    """The group moved this worker's partitions to another member while it was writing: its
    transaction was aborted, nothing of it is visible, and its partitions must be re-read."""


async def check_reachable(bootstrap: str, timeout_s: float = 10.0) -> None:
    """``TransportError`` naming the fix unless some bootstrap server accepts a TCP connection.

    Transports call it before their Kafka client starts, so a missing broker is one clear line
    within ``timeout_s`` instead of a client retrying (and logging) until its own timeout.
    """
    servers = [s.strip().split("://")[-1] for s in bootstrap.split(",") if s.strip()]
    for server in servers:
        host, _, port = server.rpartition(":")
        try:
            connecting = asyncio.open_connection(host.strip("[]"), int(port))
            _, writer = await asyncio.wait_for(connecting, timeout_s / len(servers))
        except (OSError, ValueError, TimeoutError):
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return
    raise broker_unreachable(bootstrap)


def broker_unreachable(bootstrap: str) -> TransportError:
    return TransportError(
        f"no Kafka broker answers at {bootstrap}: start one ('make kafka-up') or pass --broker / PIT_KAFKA_BOOTSTRAP"
    )


@dataclass(frozen=True, slots=True)
class Polled:
    """What one ``poll`` brought, to be taken in this order: partitions lost, partitions gained,
    records.

    The runtime polls only between finished batches, so nothing is in flight when it learns of a
    change: it closes the stores of ``revoked`` partitions, then restores those of ``assigned``,
    then processes ``records`` (none of which belongs to a partition no longer assigned).
    ``joined``: the group gave this member an assignment (possibly of no partition: a spare member).
    """

    records: list[Record] = field(default_factory=list)
    revoked: tuple[TopicPartition, ...] = ()
    assigned: tuple[TopicPartition, ...] = ()
    joined: bool = False


class Rebalances:
    """Assignment changes a client reported since the last poll, folded into one ``Polled``'s
    ``revoked`` and ``assigned``.

    Applying the folded sets (every revoked store closed, then every assigned one restored) ends
    where applying each change in order would: a partition revoked and assigned again is re-read
    from its changelog; one assigned and revoked again in the same poll is neither. Safe to call
    from a client's own thread (librdkafka reports rebalances on it).
    """

    __slots__ = ("_assigned", "_joined", "_lock", "_revoked")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._revoked: set[TopicPartition] = set()
        self._assigned: set[TopicPartition] = set()
        self._joined = False

    def assign(self, tps: Iterable[TopicPartition]) -> None:
        with self._lock:
            self._assigned.update(tps)
            self._joined = True

    def revoke(self, tps: Iterable[TopicPartition]) -> None:
        with self._lock:
            lost = set(tps)
            self._revoked |= lost
            self._assigned -= lost

    def pending(self) -> bool:
        """Whether a change was reported since the last ``take``."""
        with self._lock:
            return self._joined or bool(self._revoked)

    def take(self, records: list[Record]) -> Polled:
        """``records`` with every change reported since the last ``take``; starts afresh."""
        with self._lock:
            revoked, assigned, joined = self._revoked, self._assigned, self._joined
            self._revoked, self._assigned, self._joined = set(), set(), False
        return Polled(records, tuple(sorted(revoked)), tuple(sorted(assigned)), joined)


@dataclass(frozen=True, slots=True)
class Followed:
    """What one ``read_followed`` brought: committed records of the partitions followed (in
    offset order per partition), and how far each partition's reader is behind its end."""

    records: list[Record] = field(default_factory=list)
    #: Offsets between the reader's position and the partition's end as the client last saw it;
    #: a partition whose end the client has not seen yet is left out (its lag is unknown, not 0).
    lag: dict[TopicPartition, int] = field(default_factory=dict)


Guarantee = Literal["at_least_once", "exactly_once"]
GUARANTEES: tuple[Guarantee, ...] = ("at_least_once", "exactly_once")

# (record key, value) of one changelog record; a None value is a tombstone.
ChangelogWrite = tuple[bytes, bytes | None]


@dataclass(frozen=True, slots=True)
class Subscription:
    topics: Sequence[str]
    group: str
    # Names this worker's transactional producer; stable across restarts of the same worker, so a
    # restarted worker aborts what its predecessor left open instead of waiting for a timeout.
    transactional_id: str = ""
    guarantee: Guarantee = "at_least_once"


class Transport(Protocol):
    """What the runtime needs from a Kafka client."""

    async def start(self, subscription: Subscription | None) -> None:
        """Connect; with a subscription, join the consumer group (manual commits only)."""

    async def poll(self, max_records: int, timeout_s: float) -> Polled:
        """The assignment changes since the last poll and the next records of assigned
        partitions, in offset order per partition.

        Partitions are revoked and assigned only inside ``poll``; the runtime never polls while
        a checkpoint is in flight, so a commit never races a rebalance."""

    def send(
        self, topic: str, value: bytes | None, key: bytes | None, headers: Headers, partition: int | None = None
    ) -> None:
        """Queue a record. Its fate is known only at the next ``flush``."""

    async def flush(self) -> dict[TopicPartition, int]:
        """Wait until every queued record is acknowledged (acks=all, idempotent).

        Returns the highest acknowledged offset per partition written to (a worker's transport
        may return an empty mapping: it asks the client for failures only); raises
        ``DeliveryError`` if any record failed.
        """

    def commit(
        self, changelog_topic: str, changelog: Mapping[int, Sequence[ChangelogWrite]],
        offsets: Mapping[TopicPartition, int],
    ) -> Awaitable[dict[int, int]]:
        """In one transaction: the changelog records (per partition, in order) and the group's
        offsets (the next offset to read); in exactly-once mode also every record sent since the
        last commit (up to this call). Awaiting the result gives the last changelog offset
        written per partition.

        Every record sent before is acknowledged before the transaction commits (at-least-once:
        as ``flush``, and ``DeliveryError`` with nothing committed if one fails); the transaction
        may be built while those acknowledgements are still arriving.

        Raises ``Fenced`` when the group has given the partitions to another member, another
        ``TransportError`` when the transaction was aborted; either way nothing of it is visible.
        """

    async def abort(self) -> None:
        """Abort an open transaction (exactly-once: the records sent since the last commit vanish)."""

    async def seek(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Make the next poll re-read assigned partitions from these offsets."""

    async def read_partition(self, tp: TopicPartition, start_offset: int, max_records: int | None = None) -> list[
            Record]:
        """The records of ``tp`` from ``start_offset`` towards its current end (committed ones
        only), at most ``max_records``: fewer only when the end was reached (for state restore,
        which reads a partition a chunk at a time)."""

    async def read_followed(self, starts: Mapping[TopicPartition, int], max_records: int) -> Followed:
        """Committed records of the partitions in ``starts`` that the client has already fetched,
        at most ``max_records``, without waiting for more (standby stores, docs/adr/0012).

        A reader of its own that only assigns: it never joins a group and never commits.
        ``starts`` is the whole set followed: a partition followed already reads on when its
        start is where the records handed out for it ended; any other start (a partition new to
        the set, or a store that moved on meanwhile) is read from there (at the earliest, the
        partition's first offset); a partition left out is no longer read. Fetching goes on
        between calls."""

    async def committed(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The group's committed offsets of these partitions (those that have one). A client
        that can (librdkafka, read_committed) waits out a transaction still committing them."""

    async def pause(self, tps: Sequence[TopicPartition]) -> None:
        """Stop handing out records of these assigned partitions (a store still being restored)
        while the consumer keeps polling, so it stays in the group."""

    async def resume(self, tps: Sequence[TopicPartition]) -> None:
        """Hand out records of these assigned partitions again."""

    def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The end offsets last seen by the consumer (no broker round trip), for the lag metric."""

    async def partitions_for(self, topic: str) -> int:
        """How many partitions ``topic`` has; ``TransportError`` if it does not exist."""

    async def stop(self) -> None:
        """Leave the group and close the client."""
