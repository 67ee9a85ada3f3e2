"""A readable field-by-field difference of two envelopes (and of their decoded payloads)."""

from __future__ import annotations

from google.protobuf.message import Message
from pit.envelope.v1.envelope_pb2 import EventEnvelope


def without_signature(value: bytes) -> bytes:
    """The envelope's bytes with ``signature`` cleared: what a replay (which holds no key) writes."""
    env = EventEnvelope.FromString(value)
    if not env.signature:
        return value
    env.ClearField("signature")
    return bytes(env.SerializeToString(deterministic=True))


def field_diff(expected: bytes, actual: bytes, payload_class: type[Message] | None = None,
               limit: int = 12) -> list[str]:
    """``field: replayed != on the topic`` lines, payload fields as ``payload.name``."""
    want, got = EventEnvelope.FromString(expected), EventEnvelope.FromString(actual)
    lines = _diff(want, got, "")
    if want.payload != got.payload and payload_class is not None:
        try:
            decoded = _diff(payload_class.FromString(want.payload), payload_class.FromString(got.payload), "payload.")
            # The payload's own fields first: they say what changed; its hash only follows.
            lines = decoded + [line for line in lines if not line.startswith("payload:")]
        except Exception:  # an undecodable payload keeps the raw bytes line
            lines.append("payload: (bytes differ and do not decode as the declared type)")
    return lines[:limit]


def _diff(want: Message, got: Message, prefix: str) -> list[str]:
    lines = []
    for fd in want.DESCRIPTOR.fields:
        a, b = getattr(want, fd.name), getattr(got, fd.name)
        if a != b:
            lines.append(f"{prefix}{fd.name}: {_show(a)} != {_show(b)}")
    return lines


def _show(value: object) -> str:
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, Message):
        return "{" + str(value).replace("\n", " ").strip() + "}"
    return repr(value)
