"""The local-Kafka devkit: one home for what tests, ``bench/``, ``bench/chaos/`` and the demo need
from a broker on this machine (see docs/adr/0009-devkit.md). Not part of the wheel.

- ``devkit.ports``: ``free_port``.
- ``devkit.broker``: a private KRaft broker from the Maven jars (``infra/kafka/kafka.sh``).
- ``devkit.topics``: create topics, read records back, end offsets, a group's committed offsets.
- ``devkit.workers``: ``pit-streams worker`` subprocesses, ready when ``/readyz`` says so.
"""
