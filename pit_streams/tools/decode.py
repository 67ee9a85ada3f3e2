"""A record as a person (or ``jq``) reads it: coordinates, envelope ids, the decoded payload,
and for a dead letter its reason and the refused record, decoded in turn."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import json_format, text_format
from google.protobuf.message import DecodeError
from pit.envelope.v1.envelope_pb2 import EventEnvelope

from pit_streams.runtime import deadletter
from pit_streams.tools.common import message_class


def decode_value(value: bytes | None, types: Sequence[str]) -> dict[str, Any]:
    """The envelope fields of ``value`` and its payload (as a dict), decoded with the envelope's
    ``payload_type`` when the catalog lists it for the topic, else the catalog's first type."""
    if not value:
        return {"error": "empty value (not an envelope)"}
    try:
        env = EventEnvelope.FromString(value)
    except DecodeError:
        return {"error": f"not an envelope ({len(value)} bytes)"}
    if not env.payload_type:
        return {"error": f"not an envelope ({len(value)} bytes)"}
    out: dict[str, Any] = {
        "key": env.key, "event_id": env.event_id, "ts": env.ts.ToJsonString(), "producer": env.producer,
        "tenant": env.tenant, "payload_type": env.payload_type,
    }  # fmt: skip
    if env.causation_id:
        out["causation_id"] = env.causation_id
    name = env.payload_type if env.payload_type in types or not types else types[0]
    try:
        payload = message_class(name).FromString(env.payload)
    except (DecodeError, Exception) as exc:  # an unknown type or bytes that do not decode: say so
        out["error"] = f"payload does not decode as {name}: {exc}"
        return out
    out["payload"] = json_format.MessageToDict(payload, preserving_proto_field_name=True)
    out["_text"] = text_format.MessageToString(payload, as_one_line=True)
    return out


def decode_record(
    msg: Any, types: Sequence[str], source_types: Mapping[str, Sequence[str]] | None = None
) -> dict[str, Any]:
    """One confluent-kafka ``Message``; ``source_types`` (per source topic) decodes a dead letter's
    refused record too."""
    out: dict[str, Any] = {"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset()}
    out.update(decode_value(msg.value(), types))
    headers = {k: v for k, v in (msg.headers() or [])}
    if deadletter.REASON in headers:
        out["reason"] = headers[deadletter.REASON].decode("utf-8", "replace")
        out["detail"] = headers.get(deadletter.DETAIL, b"").decode("utf-8", "replace")
        source = headers.get(deadletter.SOURCE_TOPIC, b"").decode()
        out["source"] = (f"{source}[{headers.get(deadletter.SOURCE_PARTITION, b'?').decode()}]"
                         f"@{headers.get(deadletter.SOURCE_OFFSET, b'?').decode()}")
        try:
            refused = deadletter.read_dead_letter(msg.value() or b"").value
        except (DecodeError, ValueError):
            refused = None
        if refused is not None and source_types is not None:
            inner = decode_value(refused, source_types.get(source, ()))
            inner.pop("_text", None)
            out["refused"] = inner
    return out


def as_text(record: dict[str, Any]) -> str:
    """One line: ``topic[p]@offset key event_id payload``, then the dead-letter reason if any."""
    head = f"{record['topic']}[{record['partition']}]@{record['offset']}"
    if "reason" in record:
        head += f" reason={record['reason']} source={record['source']} detail={record['detail']!r}"
    if "event_id" in record:
        head += f" key={record['key']} event_id={record['event_id']} ts={record['ts']} {record['payload_type']}"
    if "error" in record:
        return f"{head} ! {record['error']}"
    if "reason" in record and "refused" in record:
        return f"{head} refused={json.dumps(record['refused'], sort_keys=True)}"
    return f"{head} {{{record.get('_text', '')}}}"


def as_json(record: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in record.items() if not k.startswith("_")}, sort_keys=True)
