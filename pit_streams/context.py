"""What a handler sees besides its payload: the source envelope, ``emit`` and keyed state."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from pit.envelope.v1.envelope_pb2 import EventEnvelope

from pit_streams.contract import Key, key_of, parse_key, payload_type_of
from pit_streams.errors import EmitError

_FILLED_FROM_KEY = (("tenant_id", "tenant"), ("series_id", "series"), ("cell_id", "cell"))


class StateBackend(Protocol):
    def get(self, key: str, name: str) -> int | None: ...
    def key_state(self, key: str) -> dict[str, int]: ...


class KeyedState:
    """Integer state scoped to exactly the record's canonical key (integer micros fit it exactly).

    A handler reads and writes only the entries of the key it is processing — not those of a
    longer key that starts with it, nor another tenant's. Writes take effect when the handler
    returns successfully and are durable once the batch commits.
    """

    __slots__ = ("_backend", "_key", "writes")

    def __init__(self, key: Key, backend: StateBackend) -> None:
        self._key = key.text
        self._backend = backend
        self.writes: dict[str, int | None] = {}

    def get(self, name: str, default: int = 0) -> int:
        if name in self.writes:
            value = self.writes[name]
            return default if value is None else value
        stored = self._backend.get(self._key, name)
        return default if stored is None else stored

    def put(self, name: str, value: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"state {name!r} holds integers (e.g. micros), not {type(value).__name__}")
        if not -(2**63) <= value < 2**63:
            raise OverflowError(f"state {name!r} = {value} does not fit int64")
        if not isinstance(name, str) or not name or len(name) > 256:
            raise ValueError(f"state name {name!r} must be a non-empty string of at most 256 characters")
        self.writes[name] = value

    def delete(self, name: str) -> None:
        self.writes[name] = None

    def items(self, prefix: str = "") -> dict[str, int]:
        """Entries whose name starts with ``prefix``, including this handler's own writes."""
        merged = self._backend.key_state(self._key)
        for k, v in self.writes.items():
            if v is None:
                merged.pop(k, None)
            else:
                merged[k] = v
        return {k: v for k, v in sorted(merged.items()) if k.startswith(prefix)}


class Emitted:
    __slots__ = ("has_event_id", "key", "message", "topic")

    def __init__(self, topic: str, message: Message, key: Key, has_event_id: bool) -> None:
        self.topic = topic
        self.message = message
        self.key = key
        self.has_event_id = has_event_id


class Context:
    """Passed to every handler call.

    Attributes:
        envelope: the validated source envelope (read-only by convention).
        key: its parsed canonical key.
        state: integer state scoped to ``key``.
    """

    __slots__ = ("_backend", "_emits", "_state", "envelope", "key", "offset", "outputs", "partition", "topic")

    def __init__(
        self,
        envelope: EventEnvelope,
        key: Key,
        emits: Mapping[str, type[Message]],
        backend: StateBackend,
        *,
        topic: str,
        partition: int,
        offset: int,
    ) -> None:
        self.envelope = envelope
        self.key = key
        self._backend = backend
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
            self._state = KeyedState(self.key, self._backend)
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
        the message are filled from the key; filled ones must agree with it.
        """
        expected = self._emits.get(topic)
        if expected is None:
            raise EmitError(
                f"{topic} is not among this handler's declared outputs: add it to"
                f" emits= in @app.handler (declared: {sorted(self._emits) or 'none'})"
            )
        if type(message) is not expected:
            raise EmitError(f"{topic} carries {payload_type_of(expected)}, not {payload_type_of(message)}")
        out_key = self.key if key is None else _as_key(key)
        if out_key.tenant != self.key.tenant:
            raise EmitError(
                f"output key {out_key} belongs to tenant {out_key.tenant!r}, but the source record"
                f" is tenant {self.key.tenant!r}: cross-tenant emits are forbidden"
            )
        has_event_id = _fill_key_fields(message, out_key)
        self.outputs.append(Emitted(topic, message, out_key, has_event_id))


def _as_key(key: Key | str) -> Key:
    parsed = parse_key(key) if isinstance(key, str) else key_of(key.tenant, key.series, key.cell)
    if not isinstance(parsed, Key):
        raise EmitError(parsed.detail)
    return parsed


_key_fields_of: dict[str, tuple[tuple[tuple[str, str], ...], bool]] = {}


def _key_fields(message: Message) -> tuple[tuple[tuple[str, str], ...], bool]:
    """Which of tenant_id/series_id/cell_id a message type has, and whether it has event_id."""
    name = message.DESCRIPTOR.full_name
    known = _key_fields_of.get(name)
    if known is None:
        fields = message.DESCRIPTOR.fields_by_name
        known = _key_fields_of[name] = (
            tuple(pair for pair in _FILLED_FROM_KEY if pair[0] in fields),
            "event_id" in fields,
        )
    return known


def _fill_key_fields(message: Message, key: Key) -> bool:
    """Fill or check the message's key fields; returns whether it has an ``event_id`` field."""
    pairs, has_event_id = _key_fields(message)
    for field_name, key_attr in pairs:
        wanted = getattr(key, key_attr)
        current = getattr(message, field_name)
        if not current:
            if wanted:
                setattr(message, field_name, wanted)
        elif current != wanted:
            raise EmitError(f"{field_name}={current!r} disagrees with output key {key}")
    return has_event_id
