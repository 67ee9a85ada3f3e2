"""Unit-test handlers without a broker: the real runtime loop over an in-memory transport.

Example (pytest-asyncio)::

    from pit_streams.testing import TestHarness
    from apps.nav import pit

    async def test_one_fill_one_nav(tmp_path):
        async with TestHarness(pit, data_dir=tmp_path) as h:
            await h.send("pit.v1.exec.trade_fill", TradeFillEvent(qty=1, price_micros=5_000_000))
            [(env, nav)] = h.outputs("pit.v1.acct.nav_update")
            assert env.causation_id == h.sent[-1].event_id
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar, cast, overload

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from pit.envelope.v1.envelope_pb2 import EventEnvelope

from pit_streams.app import App
from pit_streams.contract import Key
from pit_streams.contract.naming import DEAD_LETTER_TOPIC
from pit_streams.errors import DeclarationError
from pit_streams.producer import Producer
from pit_streams.runtime import deadletter
from pit_streams.runtime.metrics import Metrics
from pit_streams.runtime.worker import Worker, WorkerSettings
from pit_streams.suggest import did_you_mean
from pit_streams.transport.memory import MemoryBroker, MemoryTransport

DEFAULT_KEY = "t/demo/s/alpha/c/0001"
M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class Sent:
    topic: str
    key: bytes | None
    value: bytes | None
    event_id: str


@dataclass(frozen=True)
class DeadLetter:
    """A dead letter, read through its envelope: ``key`` and ``value`` are the refused record's
    own bytes; ``envelope`` and ``record_key`` are what the dead-letter topic holds."""

    reason: str
    detail: str
    key: bytes | None
    value: bytes | None
    source_topic: str
    source_offset: int
    envelope: EventEnvelope
    record_key: bytes | None
    headers: dict[str, bytes]


class TestHarness:
    """Feeds records to an app's handlers through the production loop, in memory.

    ``send`` builds a valid envelope (or takes raw bytes, to test rejections), runs the
    worker until it is idle, and the results are in ``outputs``, ``dead_letters`` and
    ``metrics`` (``metrics.deduped``, ``metrics.processed``, ``metrics.rejected``).
    """

    __test__ = False  # not a pytest test class

    def __init__(self, app: App, *, partitions: int = 1, data_dir: Path | None = None,
                 catalog: bool | str | os.PathLike[str] = True) -> None:
        """``catalog``: check ``app`` against the topic catalog as ``pit-streams worker`` does
        (``True``: ``$PIT_CATALOG`` or ``infra/topics.yaml``; a path: that file), so a test fails
        for an app the worker would refuse to start. ``False`` for catalog-free prototypes."""
        if catalog is not False:
            from pit_streams.catalog import check_app_against_catalog

            check_app_against_catalog(app, None if catalog is True else os.fspath(catalog))
        self.app = app
        self.broker = MemoryBroker()
        for topic in {*app.reads(), *app.writes()}:
            self.broker.create_topic(topic, partitions)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="pit-harness-")
            data_dir = Path(self._tmp.name)
        self.data_dir = data_dir
        self.metrics = Metrics()
        self.worker = self._new_worker()
        self._producer = Producer("pit-streams-testing", transport=MemoryTransport(self.broker))
        self.sent: list[Sent] = []

    def _new_worker(self) -> Worker:
        return Worker(self.app, MemoryTransport(self.broker), WorkerSettings(self.data_dir), self.metrics)

    async def __aenter__(self) -> TestHarness:
        await self.worker.start()
        await self._producer.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.worker.stop()
        await self._producer.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    async def restart(self) -> None:
        """Stop the worker and start a fresh one on the same data dir (a worker restart)."""
        await self.worker.stop()
        self.worker = self._new_worker()
        await self.worker.start()

    async def send(
        self,
        topic: str,
        payload: Message | bytes | None,
        *,
        key: Key | str = DEFAULT_KEY,
        event_id: str | None = None,
        ts: Timestamp | None = None,
        record_key: bytes | None = None,
        run: bool = True,
    ) -> Sent:
        """Put one record on ``topic`` (an envelope around ``payload``, or ``payload`` as raw
        bytes) and, unless ``run=False``, process until idle."""
        if topic not in self.app.handlers:
            raise DeclarationError(
                f"app {self.app.name!r} does not read {topic}{did_you_mean(topic, self.app.reads())}: send to one of"
                f" {', '.join(self.app.reads())}, or add @{self.app.name}.handler({topic!r}, ...)"
            )
        rkey: bytes | None
        if isinstance(payload, Message):
            rkey, value = self._producer.envelope_bytes(topic, payload, key=key, event_id=event_id, ts=ts)
            env = EventEnvelope.FromString(value)
            eid = env.event_id
        else:
            rkey, raw, eid = str(key).encode(), payload, event_id or ""
            value = raw or b""
        if record_key is not None:
            rkey = record_key
        self.broker.append(topic, payload if payload is None else value, rkey, [])
        sent = Sent(topic, rkey, payload if payload is None else value, eid)
        self.sent.append(sent)
        if run:
            await self.run()
        return sent

    async def resend(self, sent: Sent) -> None:
        """Deliver the exact same record again (at-least-once redelivery)."""
        self.broker.append(sent.topic, sent.value, sent.key, [])
        await self.run()

    async def run(self) -> int:
        """Process until no record is left; returns how many were polled."""
        return await self.worker.run(idle_exit_s=0)

    @overload
    def outputs(self, topic: str) -> list[tuple[EventEnvelope, Message]]: ...

    @overload
    def outputs(self, topic: str, message_type: type[M]) -> list[M]: ...

    def outputs(
        self, topic: str, message_type: type[M] | None = None
    ) -> list[tuple[EventEnvelope, Message]] | list[M]:
        """Enveloped outputs on ``topic`` with their decoded payloads; with ``message_type``
        (e.g. ``h.outputs(NAV, NAVUpdateEvent)``) just the payloads, typed for ``mypy --strict``."""
        types = {t: c for s in self.app.handlers.values() for t, c in s.emits.items()}
        declared = types.get(topic)
        if declared is None:
            outputs = ", ".join(sorted(types)) or "none"
            raise DeclarationError(f"app {self.app.name!r} emits nothing to {topic}{did_you_mean(topic, types)}:"
                                   f" its outputs are {outputs}")
        if message_type is not None and message_type is not declared:
            raise DeclarationError(f"{topic} carries {declared.DESCRIPTOR.full_name}, not"
                                   f" {message_type.DESCRIPTOR.full_name}")
        pairs: list[tuple[EventEnvelope, Message]] = []
        for rec in self.broker.records(topic):
            env = EventEnvelope.FromString(rec.value or b"")
            pairs.append((env, declared.FromString(env.payload)))
        if message_type is None:
            return pairs
        return [cast(M, payload) for _, payload in pairs]

    @property
    def dead_letters(self) -> list[DeadLetter]:
        out = []
        for rec in self.broker.records(DEAD_LETTER_TOPIC):
            headers = dict(rec.headers)
            h = {k: v.decode("utf-8", "replace") for k, v in headers.items() if k.startswith("pit.")}
            read = deadletter.read_dead_letter(rec.value or b"")
            # None also for a bare dead letter (pit.source.omitted_bytes): it carries no copy.
            value = None if deadletter.SOURCE_VALUE_NULL in headers or deadletter.SOURCE_OMITTED in headers else (
                read.value)
            out.append(DeadLetter(h[deadletter.REASON], h[deadletter.DETAIL], headers.get(deadletter.SOURCE_KEY),
                                  value, h[deadletter.SOURCE_TOPIC], int(h[deadletter.SOURCE_OFFSET]),
                                  read.envelope, rec.key, headers))
        return out
