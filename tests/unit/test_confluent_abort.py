"""The librdkafka transport's abort: nothing open is nothing to undo; an abort that does not
complete ends the client (a restart with the same transactional id settles the transaction)."""

from __future__ import annotations

import confluent_kafka as ck
import pytest

from pit_streams.transport.base import ClientFailed
from pit_streams.transport.confluent import ConfluentTransport


class _Producer:
    def __init__(self, code: int) -> None:
        self.code = code
        self.aborts = 0

    def abort_transaction(self, timeout: float) -> None:
        self.aborts += 1
        raise ck.KafkaException(ck.KafkaError(self.code))


def _transport(producer: _Producer) -> ConfluentTransport:
    transport = ConfluentTransport("127.0.0.1:9")
    transport._txn = producer
    transport._in_transaction = True
    return transport


def test_aborting_with_nothing_open_is_nothing_to_undo() -> None:
    transport = _transport(_Producer(ck.KafkaError._STATE))
    transport._abort_blocking()
    assert not transport._in_transaction


@pytest.mark.parametrize("code", [ck.KafkaError._TIMED_OUT, ck.KafkaError._CONFLICT])
def test_an_abort_that_does_not_complete_ends_the_client(code: int) -> None:
    # A timed-out abort left in progress made every later begin_transaction conflict with it:
    # the worker retried, a minute a time, without ever committing again.
    transport = _transport(_Producer(code))
    with pytest.raises(ClientFailed, match=r"abort did not complete.*restarting settles it"):
        transport._abort_blocking()


class _FailedProducer:
    """A producer failed for good: every call raises its fatal error."""

    def flush(self, timeout: float) -> int:
        raise ck.KafkaException(ck.KafkaError(ck.KafkaError.INVALID_TXN_STATE, fatal=True))


def test_stopping_after_the_producer_failed_for_good_does_not_raise() -> None:
    # The worker leaves with ClientFailed (one line, exit 2); a fatal flush at stop made it a
    # traceback (exit 1) in the broker-restart chaos scenario, exactly-once.
    import asyncio

    transport = ConfluentTransport("127.0.0.1:9")
    transport._producer = transport._txn = _FailedProducer()
    asyncio.run(transport.stop())
    assert transport._producer is None
