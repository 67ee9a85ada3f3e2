"""librdkafka: a record refused for good fails its checkpoint as permanent, so the worker isolates the
record and dead-letters it instead of re-reading the batch forever; an outage, or a refused changelog
record, stays transient. Under both guarantees, and whether the client refuses at ``produce`` (too
large for it, topic unknown) or the broker in the delivery report."""

from __future__ import annotations

import asyncio
from typing import Any

import confluent_kafka as ck
import pytest

from pit_streams.transport.base import DeliveryError, TopicPartition
from pit_streams.transport.confluent import ConfluentTransport

OUT = "pit.v1.acct.nav_update"
CHANGELOG = "pit.v1.runtime.g_changelog"


class _Msg:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self._t, self._p, self._o = topic, partition, offset

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o


class _Txn:
    """A transactional producer whose broker (or, ``at_produce``, the client itself) answers every
    record of ``refused`` with ``code``, and the others with ``others`` (None: delivered)."""

    def __init__(self, refused: str, code: int, *, at_produce: bool = False, others: int | None = None) -> None:
        self.refused, self.code, self.at_produce, self.others = refused, code, at_produce, others
        self.pending: list[tuple[Any, _Msg, Any]] = []
        self.aborted = 0

    def begin_transaction(self) -> None: ...

    def poll(self, timeout: float) -> int:
        return self.flush(timeout)

    def send_offsets_to_transaction(self, tps: Any, metadata: Any, timeout: float) -> None:
        # librdkafka's answer once a refused record has made the transaction abortable.
        if self.refused == OUT and self.code == ck.KafkaError.MSG_SIZE_TOO_LARGE:
            raise ck.KafkaException(ck.KafkaError(self.code, txn_requires_abort=True))

    def produce(self, topic: str, value: Any, key: Any = None, partition: int = 0, *, on_delivery: Any,
                headers: Any = None) -> None:
        if self.at_produce and topic == self.refused:
            raise ck.KafkaException(ck.KafkaError(self.code))
        code = self.code if topic == self.refused else self.others
        err = ck.KafkaError(code) if code is not None else None
        self.pending.append((err, _Msg(topic, partition, len(self.pending)), on_delivery))

    def flush(self, timeout: float) -> int:
        pending, self.pending = self.pending, []
        for err, msg, callback in pending:
            callback(err, msg)
        return 0

    def abort_transaction(self, timeout: float) -> None:
        self.aborted += 1

    def commit_transaction(self, timeout: float) -> None:
        raise AssertionError("a transaction with a refused record must not commit")


def _checkpoint_error(refused: str, code: int, *, at_produce: bool = False, others: int | None = None) -> DeliveryError:
    transport = ConfluentTransport("127.0.0.1:9")
    txn = _Txn(refused, code, at_produce=at_produce, others=others)
    transport._txn = transport._producer = txn  # exactly-once: one transactional producer carries everything
    transport._produce = transport._hold_for_transaction
    transport.send(OUT, b"x" * 10, b"k", [])  # held until the checkpoint, as the worker's outputs are

    async def checkpoint() -> None:
        await transport.commit(CHANGELOG, {0: [(b"o/topic", b"v")]}, {})

    with pytest.raises(DeliveryError) as caught:
        asyncio.run(checkpoint())
    assert txn.aborted == 1
    return caught.value


@pytest.mark.parametrize("at_produce", [False, True])
def test_an_output_refused_for_good_fails_an_exactly_once_checkpoint_as_permanent(at_produce: bool) -> None:
    error = _checkpoint_error(OUT, ck.KafkaError.MSG_SIZE_TOO_LARGE, at_produce=at_produce)
    assert error.permanent, f"refusal reported as transient: {error}"
    assert "outputs refused" in str(error) and OUT in str(error)


def test_a_refused_output_is_permanent_when_the_abort_it_caused_purged_the_changelog() -> None:
    # librdkafka: a refusal inside a transaction makes it abortable, which purges what is queued.
    error = _checkpoint_error(OUT, ck.KafkaError.MSG_SIZE_TOO_LARGE, others=ck.KafkaError._PURGE_QUEUE)
    assert error.permanent, f"refusal reported as transient: {error}"


class _Consumer:
    def consumer_group_metadata(self) -> object:
        return object()

    def memberid(self) -> str:
        return "member-1"


def test_the_refusal_behind_an_abortable_send_offsets_is_named_permanent() -> None:
    transport = ConfluentTransport("127.0.0.1:9")
    txn = _Txn(OUT, ck.KafkaError.MSG_SIZE_TOO_LARGE)
    transport._txn = transport._producer = txn
    transport._consumer, transport._member = _Consumer(), "member-1"
    transport._produce = transport._hold_for_transaction
    transport.send(OUT, b"x" * 10, b"k", [])

    async def checkpoint() -> None:
        await transport.commit(CHANGELOG, {0: [(b"o/topic", b"v")]}, {TopicPartition("pit.v1.exec.fills", 0): 5})

    with pytest.raises(DeliveryError) as caught:
        asyncio.run(checkpoint())
    assert caught.value.permanent and "outputs refused" in str(caught.value)


def test_records_only_purged_are_no_refusal() -> None:
    # A missing write ACL makes the transaction abortable at AddPartitionsToTxn: every record is
    # purged and no report names the cause. An outage: dead-lettering would lose every output.
    assert not _checkpoint_error(OUT, ck.KafkaError._PURGE_QUEUE).permanent
    assert not _checkpoint_error(OUT, ck.KafkaError._STATE, at_produce=True).permanent


@pytest.mark.parametrize(("refused", "code", "at_produce"), [
    (OUT, ck.KafkaError._MSG_TIMED_OUT, False),  # an outage: the same output may go through next time
    (OUT, ck.KafkaError._UNKNOWN_TOPIC, True),  # the client's metadata lacks the topic (being re-created)
    (CHANGELOG, ck.KafkaError.MSG_SIZE_TOO_LARGE, False),  # not a record's output: isolating it cannot help
])
def test_an_outage_or_a_refused_changelog_record_stays_transient(refused: str, code: int, at_produce: bool) -> None:
    assert not _checkpoint_error(refused, code, at_produce=at_produce).permanent


class _Producer:
    """At least once: the outputs' idempotent producer, whose client refuses every record at ``produce``."""

    def __init__(self, code: int) -> None:
        self.code = code

    def produce(self, topic: str, value: Any, key: Any = None, *args: Any, **kwargs: Any) -> None:
        raise ck.KafkaException(ck.KafkaError(self.code))

    def flush(self, timeout: float) -> int:
        return 0


@pytest.mark.parametrize(("code", "permanent"), [
    (ck.KafkaError._UNKNOWN_TOPIC, False), (ck.KafkaError._UNKNOWN_PARTITION, False),
    (ck.KafkaError.MSG_SIZE_TOO_LARGE, True),
])
def test_at_least_once_reads_a_refusal_at_produce_as_its_delivery_report_would(code: int, permanent: bool) -> None:
    transport = ConfluentTransport("127.0.0.1:9")
    transport._producer = _Producer(code)
    transport._produce = transport._producer.produce
    transport.send(OUT, b"v", b"k", [])

    async def flush() -> None:
        await transport.flush()

    with pytest.raises(DeliveryError) as caught:
        asyncio.run(flush())
    assert caught.value.permanent is permanent, f"{caught.value}"
