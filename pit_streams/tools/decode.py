"""A record as a person (or ``jq``) reads it: coordinates, envelope ids, the decoded payload,
and for a dead letter its reason and the refused record, decoded in turn."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import json_format, text_format
from google.protobuf.message import DecodeError
from pit.envelope.v1.envelope_pb2 import EventEnvelope

from pit_streams.contract.timestamps import timestamp_problem
from pit_streams.runtime import deadletter
from pit_streams.tools.common import message_class


def decode_value(value: bytes | None, types: Sequence[str]) -> dict[str, Any]:
    """The envelope fields of ``value`` and its payload (as a dict), decoded with the envelope's
    ``payload_type``; one the catalog does not list for the topic is named as an error."""
    if not value:
        return {"error": "empty value (not an envelope)"}
    try:
        env = EventEnvelope.FromString(value)
    except DecodeError:
        return {"error": f"not an envelope ({len(value)} bytes)"}
    if not env.payload_type:
        return {"error": f"not an envelope ({len(value)} bytes)"}
    out: dict[str, Any] = {
        "key": env.key, "event_id": env.event_id, "ts": _ts_text(env), "producer": env.producer,
        "tenant": env.tenant, "payload_type": env.payload_type,
    }  # fmt: skip
    if env.causation_id:
        out["causation_id"] = env.causation_id
    if types and env.payload_type not in types:
        out["error"] = f"payload_type {env.payload_type!r} is not catalogued for this topic ({', '.join(types)})"
        return out
    name = env.payload_type
    try:
        payload = message_class(name).FromString(env.payload)
    except (DecodeError, Exception) as exc:  # an unknown type or bytes that do not decode: say so
        out["error"] = f"payload does not decode as {name}: {exc}"
        return out
    out["payload"] = json_format.MessageToDict(payload, preserving_proto_field_name=True)
    out["_text"] = text_format.MessageToString(payload, as_one_line=True)
    return out


def _ts_text(env: EventEnvelope) -> str:
    # protobuf's own conversion raises outside years 1 to 9999; a hostile envelope may hold anything.
    if timestamp_problem(env.ts):
        return f"invalid ({env.ts.seconds} s, {env.ts.nanos} ns)"
    return str(env.ts.ToJsonString())


def decode_record(
    msg: Any, types: Sequence[str], source_types: Mapping[str, Sequence[str]] | None = None
) -> dict[str, Any]:
    """One confluent-kafka ``Message``; ``source_types`` (per source topic) decodes a dead letter's
    refused record too. Never raises: a record that cannot be shown is ``{"error": ...}``."""
    out: dict[str, Any] = {"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset()}
    try:
        _decode_into(out, msg, types, source_types)
    except Exception as exc:  # one odd record must not end a tail
        out["error"] = f"cannot decode this record: {type(exc).__name__}: {exc}"
    return out


def _decode_into(
    out: dict[str, Any], msg: Any, types: Sequence[str], source_types: Mapping[str, Sequence[str]] | None
) -> None:
    out.update(decode_value(msg.value(), types))
    # A header sent without a value comes back as None; anyone may write the dead-letter topic.
    headers = {k: (v or b"").decode("utf-8", "replace") for k, v in (msg.headers() or [])}
    if deadletter.REASON in headers:
        out["reason"] = headers[deadletter.REASON]
        out["detail"] = headers.get(deadletter.DETAIL, "")
        source = headers.get(deadletter.SOURCE_TOPIC, "")
        out["source"] = (f"{source}[{headers.get(deadletter.SOURCE_PARTITION) or '?'}]"
                         f"@{headers.get(deadletter.SOURCE_OFFSET) or '?'}")
        try:
            refused = deadletter.read_dead_letter(msg.value() or b"").value
        except (DecodeError, ValueError):
            refused = None
        if refused is not None and source_types is not None:
            inner = decode_value(refused, source_types.get(source, ()))
            inner.pop("_text", None)
            out["refused"] = inner


def as_text(record: dict[str, Any]) -> str:
    """One line: ``topic[p]@offset key event_id payload``, then the dead-letter reason if any."""
    head = f"{record['topic']}[{record['partition']}]@{record['offset']}"
    if "reason" in record:
        head += f" reason={record['reason']} source={record.get('source', '?')} detail={record.get('detail', '')!r}"
    if "event_id" in record:
        head += f" key={record['key']} event_id={record['event_id']} ts={record['ts']} {record['payload_type']}"
    if "error" in record:
        return f"{head} ! {record['error']}"
    if "reason" in record and "refused" in record:
        return f"{head} refused={json.dumps(record['refused'], sort_keys=True)}"
    return f"{head} {{{record.get('_text', '')}}}"


def as_json(record: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in record.items() if not k.startswith("_")}, sort_keys=True)
