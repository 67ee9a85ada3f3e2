"""How the librdkafka transport reads a client error: an outage, a fence, or a refusal."""

from __future__ import annotations

import operator
import threading
from dataclasses import dataclass
from typing import Any

import confluent_kafka as ck

from pit_streams.transport.base import DeliveryError, Fenced, Headers, TransportError, record_headers

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


# What a send fails with because of another error: the transaction's abortable error purges what is
# queued and refuses what is produced after it. Neither says anything about the record itself.
AFTERMATH_CODES = frozenset({ck.KafkaError._PURGE_QUEUE, ck.KafkaError._PURGE_INFLIGHT, ck.KafkaError._STATE})


def is_outage(err: ck.KafkaError) -> bool:
    """Whether a failed send may go through later (retried, never dead-lettered), whether the client
    said so at ``produce`` or in the delivery report."""
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


@dataclass(frozen=True)
class Failed:
    """The failed sends a flush or commit took: their messages, how many were outages, and the topics
    whose records were refused for good (what the send failed with because of another error — the
    aftermath of an abortable transaction — is neither)."""

    messages: list[str]
    outages: int = 0
    refused: frozenset[str] = frozenset()

    def permanent(self, remaining: int, *, changelog_topic: str | None = None) -> bool:
        """A refusal no retry can get past: some record refused for good, none of them the
        changelog's, no outage, nothing left unacknowledged. Running the batch one record at a time
        then finds the record (ADR 0003)."""
        return bool(self.refused) and not remaining and not self.outages and changelog_topic not in self.refused

    def summary(self) -> str:
        """The distinct failure messages, the first five, for an error's text."""
        return "; ".join(sorted(set(self.messages))[:5])


class SendFailures:
    """Failed sends, as the client reports them, until a flush or commit takes them.

    Sends (and their failures) come from the event loop's thread while a commit in flight takes
    them on the client's, so adding and taking hold one lock: no failure may fall between the
    two and let a batch commit over a lost output.
    """

    __slots__ = ("_lock", "_messages", "_outages", "_refused")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[str] = []
        self._outages = 0
        self._refused: set[str] = set()

    def add(self, topic: str, err: ck.KafkaError) -> None:
        with self._lock:
            self._messages.append(f"{topic}: {err.str()}")
            if is_outage(err):
                self._outages += 1
            elif err.code() not in AFTERMATH_CODES:
                self._refused.add(topic)

    def take(self) -> Failed:
        """The failures so far; starts afresh."""
        with self._lock:
            taken = Failed(self._messages, self._outages, frozenset(self._refused))
            self._messages, self._outages, self._refused = [], 0, set()
        return taken


# A header name that is not UTF-8 (Kafka allows any bytes): confluent-kafka's Message.headers()
# (c_headers_to_py) fails to decode it, yet returns the list, holding a NULL in place of the name,
# with the UnicodeDecodeError left pending, to surface at some later bytecode (and as a NULL in hand
# before that). Called through methodcaller, the C call's result is checked at once: SystemError
# from the UnicodeDecodeError, and the list is never touched. A fixed client would raise the
# UnicodeDecodeError itself. None of the record's headers can be read then; its key and value can.
_headers_of = operator.methodcaller("headers")
UNREADABLE_HEADERS = (
    "a header name is not UTF-8 (Kafka allows any bytes; confluent-kafka reads names as text and then"
    " cannot read the record's headers at all): none of its headers are carried here, its key and value are"
)


def message_headers(message: Any) -> tuple[Headers, str]:
    """A consumed message's headers, and why they could not be read ("" when they could). Every
    read of a librdkafka message's headers goes through here."""
    try:
        return record_headers(_headers_of(message)), ""
    except (UnicodeDecodeError, SystemError) as exc:
        if not isinstance(exc, UnicodeDecodeError) and not isinstance(exc.__cause__, UnicodeDecodeError):
            raise
        return [], UNREADABLE_HEADERS
