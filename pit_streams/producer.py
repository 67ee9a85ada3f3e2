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
    """Builds a valid envelope around each message and sends it keyed by the envelope key.

    ``event_id``: a fresh UUID for every ``send``, unless the caller passes ``event_id=`` on
    purpose (e.g. a stable id derived from the source, so a re-send is deduplicated downstream).
    A message's own ``event_id`` field is never read as an id, so re-sending one message object
    sends distinct events. ``ts``: ``ts=``, else the message's own ``ts`` when set, else now.
    ``producer`` = ``name@version``, canonical key, ``payload_type`` and ``payload_sha256`` follow.

    The caller's message is never written to: the payload sent is a copy, with empty
    ``tenant_id``/``series_id``/``cell_id`` filled from the key and ``event_id``/``ts`` set to the
    envelope's, so envelope and payload agree.
    """

    def __init__(
        self,
        name: str,
        *,
        version: str = "0.0.0",
        broker: str | None = None,
        transport: Transport | str = "confluent",
        allow_plaintext: bool | None = None,
    ) -> None:
        """``allow_plaintext``: connect without TLS to a non-loopback broker (default
        ``$PIT_KAFKA_ALLOW_PLAINTEXT``; otherwise refused, see ``make_transport``)."""
        self.producer = f"{name}@{version}"
        self._transport = (
            make_transport(transport, broker, allow_plaintext=allow_plaintext) if isinstance(transport, str)
            else transport
        )
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
        payload = type(message)()
        payload.CopyFrom(message)  # the caller's message stays as it was
        has_event_id = _fill_key_fields(payload, parsed)
        fields = payload.DESCRIPTOR.fields_by_name
        if ts is None:
            ts = Timestamp()
            if "ts" in fields and payload.HasField("ts"):
                ts.CopyFrom(payload.ts)  # type: ignore[attr-defined]
            else:
                ts.GetCurrentTime()
        event_id = event_id or str(uuid.uuid4())
        if has_event_id:
            payload.event_id = event_id  # type: ignore[attr-defined]
        if "ts" in fields and not payload.HasField("ts"):
            payload.ts.CopyFrom(ts)  # type: ignore[attr-defined]
        env = wrap(payload, key=parsed, event_id=event_id, producer=self.producer, ts=ts, topic=topic)
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
        """Queue ``message`` for ``topic`` under a fresh ``event_id`` (or the ``event_id=`` given);
        call ``flush`` to learn it was acknowledged. ``message`` itself is not modified."""
        record_key, value = self.envelope_bytes(topic, message, key=key, event_id=event_id, ts=ts)
        self._transport.send(topic, value, record_key, [])

    async def flush(self) -> dict[TopicPartition, int]:
        return await self._transport.flush()

    async def stop(self) -> None:
        if self._started:
            await self._transport.stop()
            self._started = False
