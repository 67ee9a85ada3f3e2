"""What a handler sees besides its payload: the source envelope, ``emit`` and keyed state."""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from pit.envelope.v1.envelope_pb2 import EventEnvelope

from pit_streams.contract import Key, key_of, parse_key, payload_type_of
from pit_streams.errors import EmitDeclarationError, EmitError, StateTypeError, StateValueError
from pit_streams.state.overlay import StateOverlay

_FILLED_FROM_KEY = (("tenant_id", "tenant"), ("series_id", "series"), ("cell_id", "cell"))


class KeyedState:
    """Integer state scoped to exactly the record's canonical key (integer micros fit it exactly).

    A handler reads and writes only the entries of the key it is processing — not those of a
    longer key that starts with it, nor another tenant's. Writes take effect when the handler
    returns successfully and are durable once the batch commits. Reads see this handler's
    writes over the batch's (``StateOverlay`` resolves both layers).
    """

    __slots__ = ("_key", "_overlay", "writes")

    def __init__(self, key: Key, overlay: StateOverlay) -> None:
        self._key = key.text
        self._overlay = overlay
        self.writes: dict[str, int | None] = {}

    def get(self, name: str, default: int = 0) -> int:
        value = self._overlay.get(self._key, name, self.writes)
        return default if value is None else value

    def put(self, name: str, value: int) -> None:
        # The name first: a non-string name must not be reported (and classified) as a bad value.
        if not isinstance(name, str) or not name or len(name) > 256:
            raise StateValueError(f"state name {name!r} must be a non-empty string of at most 256 characters")
        if not isinstance(value, int) or isinstance(value, bool):
            raise StateTypeError(f"state {name!r} holds integers (e.g. micros), not {type(value).__name__}")
        if not -(2**63) <= value < 2**63:
            raise StateValueError(f"state {name!r} = {value} does not fit int64")
        self.writes[name] = value

    def delete(self, name: str) -> None:
        self.writes[name] = None

    def items(self, prefix: str = "") -> dict[str, int]:
        """Entries whose name starts with ``prefix``, including this handler's own writes."""
        merged = self._overlay.key_state(self._key, self.writes)
        return {k: v for k, v in sorted(merged.items()) if k.startswith(prefix)}


class Emitted:
    """An output as it was when ``ctx.emit`` was called: its bytes, not the message object, so a
    handler may reuse or change the message afterwards."""

    __slots__ = ("data", "key", "message_type", "needs_event_id", "topic")

    def __init__(self, topic: str, data: bytes, message_type: type[Message], key: Key, needs_event_id: bool) -> None:
        self.topic = topic
        self.data = data
        self.message_type = message_type
        self.key = key
        self.needs_event_id = needs_event_id

    @property
    def payload_type(self) -> str:
        return payload_type_of(self.message_type)

    def message(self) -> Message:
        """A decoded copy (for tests and tools; the runtime sends ``data``)."""
        return self.message_type.FromString(self.data)


class Context:
    """Passed to every handler call.

    Attributes:
        envelope: the validated source envelope (read-only by convention).
        key: its parsed canonical key.
        state: integer state scoped to ``key``.
    """

    __slots__ = ("_emits", "_overlay", "_state", "envelope", "key", "offset", "outputs", "partition", "topic")

    def __init__(
        self,
        envelope: EventEnvelope,
        key: Key,
        emits: Mapping[str, type[Message]],
        overlay: StateOverlay,
        *,
        topic: str,
        partition: int,
        offset: int,
    ) -> None:
        self.envelope = envelope
        self.key = key
        self._overlay = overlay
        self._state: KeyedState | None = None
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self._emits = emits
        self.outputs: list[Emitted] = []

    @property
    def state(self) -> KeyedState:
        """Integer state scoped to this record's key (made on first use: most handlers need none)."""
        if self._state is None:
            self._state = KeyedState(self.key, self._overlay)
        return self._state

    @property
    def state_writes(self) -> dict[str, int | None]:
        return self._state.writes if self._state is not None else {}

    @property
    def event_id(self) -> str:
        return str(self.envelope.event_id)

    @property
    def ts(self) -> Timestamp:
        ts: Timestamp = self.envelope.ts
        return ts

    def emit(self, topic: str, message: Message, *, key: Key | str | None = None) -> None:
        """Queue ``message`` for ``topic``; the framework wraps it in an envelope.

        The output inherits the source record's key unless ``key`` is given, and a given key
        must belong to the same tenant. Empty ``tenant_id``/``series_id``/``cell_id`` fields of
        the message are filled from the key; filled ones must agree with it. The message is
        serialised now (later changes to it are not sent) and left unchanged; its ``event_id``
        field is sent as the output envelope's id.
        """
        expected = self._emits.get(topic)
        if expected is None:
            raise EmitDeclarationError(
                f"{topic} is not among this handler's declared outputs: add it to"
                f" emits= in @app.handler (declared: {sorted(self._emits) or 'none'})"
            )
        if type(message) is not expected:
            raise EmitDeclarationError(f"{topic} carries {payload_type_of(expected)}, not {payload_type_of(message)}")
        out_key = self.key if key is None else _as_key(key)
        if out_key.tenant != self.key.tenant:
            raise EmitError(
                f"output key {out_key} belongs to tenant {out_key.tenant!r}, but the source record"
                f" is tenant {self.key.tenant!r}: cross-tenant emits are forbidden"
            )
        data, needs_event_id = snapshot(message, out_key)
        self.outputs.append(Emitted(topic, data, expected, out_key, needs_event_id))


def _as_key(key: Key | str) -> Key:
    parsed = parse_key(key) if isinstance(key, str) else key_of(key.tenant, key.series, key.cell)
    if not isinstance(parsed, Key):
        raise EmitError(parsed.detail)
    return parsed


# Per message class, not per descriptor name: ``type(message)`` is a cheaper lookup than
# ``message.DESCRIPTOR.full_name``, and these run for every output.
_key_fields_of: dict[type[Message], tuple[tuple[tuple[str, str], ...], bool]] = {}
_event_id_prefix_of: dict[type[Message], bytes | None] = {}


def _key_fields(message: Message) -> tuple[tuple[tuple[str, str], ...], bool]:
    """Which of tenant_id/series_id/cell_id a message type has, and whether it has event_id."""
    known = _key_fields_of.get(type(message))
    if known is None:
        fields = message.DESCRIPTOR.fields_by_name
        known = _key_fields_of[type(message)] = (
            tuple(pair for pair in _FILLED_FROM_KEY if pair[0] in fields),
            "event_id" in fields,
        )
    return known


# The varint of every length below 128 (ids are at most 128 characters): one byte, no loop.
_SHORT_VARINTS = [bytes((n,)) for n in range(0x80)]


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _SHORT_VARINTS[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _event_id_tag(message_type: type[Message]) -> bytes | None:
    """The wire tag of ``event_id`` when it is the type's lowest-numbered field, else None.

    Deterministic serialisation writes fields in number order, so then the bytes of the message
    with ``event_id`` set are the tag, the length and the id in front of the bytes without it.
    """
    if message_type not in _event_id_prefix_of:
        fields = message_type.DESCRIPTOR.fields
        field = message_type.DESCRIPTOR.fields_by_name.get("event_id")
        first = field is not None and field.type == field.TYPE_STRING and field.number == min(f.number for f in fields)
        _event_id_prefix_of[message_type] = _varint((field.number << 3) | 2) if first and field is not None else None
    return _event_id_prefix_of[message_type]


def with_event_id(message_type: type[Message], data: bytes, event_id: str) -> bytes:
    """``data`` (a serialised ``message_type`` with no ``event_id``) with ``event_id`` set."""
    tag = _event_id_tag(message_type)
    if tag is not None:
        raw = event_id.encode()
        return tag + _varint(len(raw)) + raw + data
    message = message_type.FromString(data)
    message.event_id = event_id  # type: ignore[attr-defined]
    return message.SerializeToString(deterministic=True)


def snapshot(message: Message, key: Key) -> tuple[bytes, bool]:
    """``message``'s bytes as of now, empty key fields filled from ``key``, ``event_id`` left out,
    and whether the type has an ``event_id`` field (the runtime sets it to the envelope's). The
    caller's message is left as it was."""
    pairs, has_event_id = _key_fields(message)
    filled: list[str] = []
    own_id = getattr(message, "event_id", "") if has_event_id else ""
    try:
        if own_id:
            # The runtime sets the payload's event_id to its envelope's (consumers refuse a mismatch).
            message.ClearField("event_id")
        _fill(message, key, pairs, filled)
        data = message.SerializeToString(deterministic=True)
    finally:
        # Filling a copy would cost a copy per output; filling and clearing costs nothing.
        for field_name in filled:
            message.ClearField(field_name)
        if own_id:
            message.event_id = own_id  # type: ignore[attr-defined]
    return data, has_event_id


def _fill_key_fields(message: Message, key: Key, filled: list[str] | None = None) -> bool:
    """Fill or check the message's key fields (naming the filled ones in ``filled``); returns
    whether it has an ``event_id`` field."""
    pairs, has_event_id = _key_fields(message)
    _fill(message, key, pairs, filled)
    return has_event_id


def _fill(message: Message, key: Key, pairs: tuple[tuple[str, str], ...], filled: list[str] | None) -> None:
    for field_name, key_attr in pairs:
        wanted = getattr(key, key_attr)
        current = getattr(message, field_name)
        if not current:
            if wanted:
                setattr(message, field_name, wanted)
                if filled is not None:
                    filled.append(field_name)
        elif current != wanted:
            raise EmitError(f"{field_name}={current!r} disagrees with output key {key}")
