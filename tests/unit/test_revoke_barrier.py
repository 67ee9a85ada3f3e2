"""A revocation waits for the transaction in flight (confluent transport, pipelined commits).

Were the group to move on while batch N's transaction is still open, the next owner's restore
(read_committed) would end before it and miss it, and N's offsets could still commit after.
The revoke callback, on the consumer's thread inside ``consume``, is the barrier.
"""

from __future__ import annotations

import threading

from pit_streams.transport.base import TopicPartition
from pit_streams.transport.confluent import ConfluentTransport


def test_a_revocation_is_recorded_only_after_the_commit_in_flight_returns() -> None:
    transport = ConfluentTransport("127.0.0.1:9")  # no client is made before start()
    committing, finish = threading.Event(), threading.Event()

    def commit_in_flight() -> None:
        committing.set()
        finish.wait(10)

    try:
        transport._commit_thread.submit(commit_in_flight)
        assert committing.wait(10)
        revoked = threading.Thread(target=transport._record_revoke, args=(None, [_Partition("t", 0)]))
        revoked.start()
        revoked.join(0.5)
        assert revoked.is_alive() and not transport._rebalances.pending()  # held back by the commit
        finish.set()
        revoked.join(10)
        assert not revoked.is_alive()
        assert transport._rebalances.take([]).revoked == (TopicPartition("t", 0),)
    finally:
        finish.set()
        transport._commit_thread.shutdown(wait=True)
        transport._thread.shutdown(wait=True)


class _Partition:
    """What librdkafka hands the revoke callback: a topic and a partition."""

    def __init__(self, topic: str, partition: int) -> None:
        self.topic, self.partition = topic, partition
