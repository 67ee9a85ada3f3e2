"""Exactly-once on librdkafka: an output the broker refuses for good fails the checkpoint as
permanent, as at-least-once does, so the worker isolates the record and dead-letters it instead of
re-reading the batch forever. An outage, or a refused changelog record, stays transient."""

from __future__ import annotations

import asyncio
from typing import Any

import confluent_kafka as ck
import pytest

from pit_streams.transport.base import DeliveryError
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
    """A transactional producer whose broker answers every record of ``refused`` with ``code``."""

    def __init__(self, refused: str, code: int) -> None:
        self.refused, self.code = refused, code
        self.pending: list[tuple[Any, _Msg, Any]] = []
        self.aborted = 0

    def begin_transaction(self) -> None: ...

    def produce(self, topic: str, value: Any, key: Any = None, partition: int = 0, *, on_delivery: Any,
                headers: Any = None) -> None:
        err = ck.KafkaError(self.code) if topic == self.refused else None
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


def _checkpoint_error(refused: str, code: int) -> DeliveryError:
    transport = ConfluentTransport("127.0.0.1:9")
    txn = _Txn(refused, code)
    transport._txn = transport._producer = txn  # exactly-once: one transactional producer carries everything
    transport._produce = transport._hold_for_transaction
    transport.send(OUT, b"x" * 10, b"k", [])  # held until the checkpoint, as the worker's outputs are

    async def checkpoint() -> None:
        await transport.commit(CHANGELOG, {0: [(b"o/topic", b"v")]}, {})

    with pytest.raises(DeliveryError) as caught:
        asyncio.run(checkpoint())
    assert txn.aborted == 1
    return caught.value


def test_an_output_refused_for_good_fails_an_exactly_once_checkpoint_as_permanent() -> None:
    error = _checkpoint_error(OUT, ck.KafkaError.MSG_SIZE_TOO_LARGE)
    assert error.permanent, f"refusal reported as transient: {error}"
    assert "outputs refused" in str(error) and OUT in str(error)


@pytest.mark.parametrize(("refused", "code"), [
    (OUT, ck.KafkaError._MSG_TIMED_OUT),  # an outage: the same output may go through next time
    (CHANGELOG, ck.KafkaError.MSG_SIZE_TOO_LARGE),  # not a record's output: isolating it cannot help
])
def test_an_outage_or_a_refused_changelog_record_stays_transient(refused: str, code: int) -> None:
    assert not _checkpoint_error(refused, code).permanent
