"""``Producer``: for services that only emit (e.g. the trade-fill producer).

Example::

    producer = pit_streams.Producer("tradefill-producer", version="0.1.0", broker="127.0.0.1:9092")
    async with producer:
        producer.send("pit.v1.exec.trade_fill", fill, key="t/demo/s/alpha/c/0001")
        await producer.flush()   # every record acknowledged, or DeliveryError
"""

from __future__ import annotations

import uuid
from types import TracebackType

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from pit_streams.context import _fill_key_fields
from pit_streams.contract import Key, Rejection, parse_key, validate, wrap
from pit_streams.errors import EmitError
from pit_streams.transport.base import TopicPartition, Transport
from pit_streams.transport.factory import make_transport


class Producer:
    """Builds a valid envelope around each message (``event_id`` and ``ts`` from the message when
    it has them set, else a fresh UUID and now;
    ``producer`` = ``name@version``, canonical key, ``payload_type``, ``payload_sha256``),
    validates it, and sends it keyed by the envelope key."""

    def __init__(
        self,
        name: str,
        *,
        version: str = "0.0.0",
        broker: str | None = None,
        transport: Transport | str = "confluent",
    ) -> None:
        self.producer = f"{name}@{version}"
        self._transport = make_transport(transport, broker) if isinstance(transport, str) else transport
        self._started = False

    async def __aenter__(self) -> Producer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        if not self._started:
            await self._transport.start(None)
            self._started = True

    def envelope_bytes(
        self,
        topic: str,
        message: Message,
        *,
        key: Key | str,
        event_id: str | None = None,
        ts: Timestamp | None = None,
    ) -> tuple[bytes, bytes]:
        """The (record key, envelope bytes) that ``send`` would produce."""
        parsed = parse_key(key, allow_venue=topic.split(".")[2:3] == ["ops"]) if isinstance(key, str) else key
        if isinstance(parsed, Rejection):
            raise EmitError(parsed.detail)
        has_event_id = _fill_key_fields(message, parsed)
        fields = message.DESCRIPTOR.fields_by_name
        # The message's own event_id and ts, when set, are the envelope's; otherwise fresh ones are
        # made and written back into the message so envelope and payload agree.
        if ts is None:
            if "ts" in fields and message.HasField("ts"):
                ts = Timestamp()
                ts.CopyFrom(message.ts)  # type: ignore[attr-defined]
            else:
                ts = Timestamp()
                ts.GetCurrentTime()
        event_id = event_id or (getattr(message, "event_id", "") if has_event_id else "") or str(uuid.uuid4())
        if has_event_id and not getattr(message, "event_id"):  # noqa: B009
            message.event_id = event_id  # type: ignore[attr-defined]
        if "ts" in fields and not message.HasField("ts"):
            message.ts.CopyFrom(ts)  # type: ignore[attr-defined]
        env = wrap(message, key=parsed, event_id=event_id, producer=self.producer, ts=ts, topic=topic)
        checked = validate(env, None, check_record_key=False, allow_venue=bool(parsed.venue))
        if isinstance(checked, Rejection):
            raise EmitError(checked.detail)
        return env.key.encode(), env.SerializeToString()

    def send(
        self,
        topic: str,
        message: Message,
        *,
        key: Key | str,
        event_id: str | None = None,
        ts: Timestamp | None = None,
    ) -> None:
        """Queue ``message`` for ``topic``; call ``flush`` to learn it was acknowledged."""
        record_key, value = self.envelope_bytes(topic, message, key=key, event_id=event_id, ts=ts)
        self._transport.send(topic, value, record_key, [])

    async def flush(self) -> dict[TopicPartition, int]:
        return await self._transport.flush()

    async def stop(self) -> None:
        if self._started:
            await self._transport.stop()
            self._started = False
