"""The test suite's names for the devkit (``devkit/``, see docs/adr/0009-devkit.md): test modules
import them as ``from kafka_support import ...``. Nothing is implemented here.

- ``start_broker(data_dir, extra_props)``: a private single-node KRaft broker on free loopback
  ports (``BrokerHandle``: ``bootstrap``, ``stop()``). The session fixture ``kafka_bootstrap`` in
  conftest.py uses it; tests that need a differently configured broker (e.g. an mTLS listener +
  StandardAuthorizer) call it themselves with ``extra_props``.
- ``create_topic``, ``unique_topic``, ``consume_all``: wait for the broker's answer, never sleep;
  ``delete_topics`` and ``existing_topics`` to take a topic away under a running group.
"""

from __future__ import annotations

from devkit.broker import JARS_DIR, KAFKA_SH, REPO_ROOT, kafka_version, run_kafka_sh, start_broker
from devkit.broker import Broker as BrokerHandle
from devkit.ports import free_port
from devkit.records import Record
from devkit.records import consume as consume_all
from devkit.topics import create_topic, delete_topics, ensure_topic, existing_topics, unique_topic

__all__ = ["JARS_DIR", "KAFKA_SH", "REPO_ROOT", "BrokerHandle", "Record", "consume_all", "create_topic",
           "delete_topics", "ensure_topic", "existing_topics", "free_port", "kafka_version", "run_kafka_sh",
           "start_broker", "unique_topic"]  # fmt: skip
