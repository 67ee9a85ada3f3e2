"""How the librdkafka transport reads a client error: an outage, a fence, or a refusal."""

from __future__ import annotations

import threading

import confluent_kafka as ck

from pit_streams.transport.base import DeliveryError, Fenced, TransportError

# Delivery errors that say the broker was not there, not that it refused the record.
OUTAGE_CODES = frozenset({
    ck.KafkaError._MSG_TIMED_OUT, ck.KafkaError._TIMED_OUT, ck.KafkaError._TRANSPORT,
    ck.KafkaError._ALL_BROKERS_DOWN, ck.KafkaError.NOT_ENOUGH_REPLICAS, ck.KafkaError.UNKNOWN_TOPIC_OR_PART,
    ck.KafkaError._UNKNOWN_TOPIC, ck.KafkaError._UNKNOWN_PARTITION, ck.KafkaError.TOPIC_AUTHORIZATION_FAILED,
})
FENCED_CODES = frozenset({
    ck.KafkaError.UNKNOWN_MEMBER_ID, ck.KafkaError.ILLEGAL_GENERATION, ck.KafkaError.FENCED_INSTANCE_ID,
    ck.KafkaError.REBALANCE_IN_PROGRESS, ck.KafkaError._FENCED, ck.KafkaError.PRODUCER_FENCED,
    ck.KafkaError.INVALID_PRODUCER_EPOCH,
})


def is_outage(err: ck.KafkaError) -> bool:
    """Whether a failed send may go through later (retried, never dead-lettered), whether the client
    said so at ``produce`` or in the delivery report: only a refusal for good is a record's own."""
    return bool(err.retriable()) or err.code() in OUTAGE_CODES


class Abort(TransportError):
    """A record of the transaction was not acknowledged (caught inside the commit)."""


class Moved(TransportError):
    """The consumer is no longer the group member its partitions were assigned to (caught
    inside the commit)."""


def transaction_error(exc: Exception) -> TransportError:
    if isinstance(exc, Moved):
        return Fenced(f"transaction aborted: {exc}")
    if isinstance(exc, Abort):
        return DeliveryError(f"records of the transaction not acknowledged, transaction aborted: {exc}")
    err = exc.args[0]
    if err.code() in FENCED_CODES:
        return Fenced(f"transaction aborted: {err.str()}")
    return TransportError(f"transaction aborted: {err.str()}")


class SendFailures:
    """Failed sends, as the client reports them, until a flush or commit takes them.

    Sends (and their failures) come from the event loop's thread while a commit in flight takes
    them on the client's, so adding and taking hold one lock: no failure may fall between the
    two and let a batch commit over a lost output.
    """

    __slots__ = ("_lock", "_messages", "_transient")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[str] = []
        self._transient = 0

    def add(self, message: str, *, transient: bool) -> None:
        with self._lock:
            self._messages.append(message)
            self._transient += transient

    def take(self) -> tuple[list[str], int]:
        """The failures so far and how many were outages (not refusals); starts afresh."""
        with self._lock:
            messages, transient = self._messages, self._transient
            self._messages, self._transient = [], 0
        return messages, transient
