"""``pit-streams send TOPIC``: put one valid envelope on a topic, for trying a handler by hand.

    pit-streams send pit.v1.exec.trade_fill --broker 127.0.0.1:9092 \\
        --json '{"tenant_id": "demo", "series_id": "alpha", "cell_id": "0001", "instrument": "BTC-USD",
                 "qty": 1, "price_micros": 50000000000}'

The payload type is the catalog's for the topic (``--type`` picks one of several); the payload
is JSON (``--json``), protobuf text format (``--text``), or either on stdin. The key is ``--key``,
else built from the payload's ``tenant_id``/``series_id``/``cell_id``; ``event_id`` is ``--event-id``
or a fresh UUID (send the same id twice to see the worker's dedupe).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid

from google.protobuf import json_format, text_format
from google.protobuf.message import Message

from pit_streams.errors import ConfigError
from pit_streams.tools.common import add_broker_args, catalogued_types, message_class

PRODUCER_NAME = "pit-streams-send"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``send``."""
    p = sub.add_parser("send", help="put one enveloped record on a topic (payload as JSON or protobuf text)")
    p.add_argument("topic", help="a catalogued topic, e.g. pit.v1.exec.trade_fill")
    add_broker_args(p)
    given = p.add_mutually_exclusive_group()
    given.add_argument("--json", dest="json_payload", metavar="JSON", help="the payload as JSON")
    given.add_argument("--text", metavar="TEXT", help="the payload in protobuf text format")
    p.add_argument("--type", dest="payload_type", help="payload type, when the catalog lists several for the topic")
    p.add_argument("--key", help="canonical key t/{tenant}/s/{series}[/c/{cell}] (default: from the payload's"
                   " tenant_id, series_id, cell_id)")
    p.add_argument("--event-id", help="envelope event_id (default: a fresh UUID)")
    p.set_defaults(func=run)


def parse_payload(cls: type[Message], json_text: str | None, text: str | None) -> Message:
    """``cls`` from JSON or text format; stdin when neither is given (JSON if it starts with ``{``)."""
    if json_text is None and text is None:
        data = sys.stdin.read()
        json_text, text = (data, None) if data.lstrip().startswith("{") else (None, data)
    message = cls()
    try:
        if json_text is not None:
            json_format.Parse(json_text, message)
        else:
            text_format.Parse(text or "", message)
    except (json_format.ParseError, text_format.ParseError) as exc:
        raise ConfigError(f"payload is not a valid {cls.DESCRIPTOR.full_name}: {exc}") from None
    return message


def key_of_payload(message: Message, key: str | None) -> str:
    """``--key``, else the canonical key the payload's own tenant/series/cell fields name."""
    if key:
        return key
    fields = message.DESCRIPTOR.fields_by_name
    parts = [getattr(message, f) if f in fields else "" for f in ("tenant_id", "series_id", "cell_id")]
    if not parts[0] or not parts[1]:
        raise ConfigError("no key: pass --key t/{tenant}/s/{series}[/c/{cell}] or set tenant_id and series_id")
    return f"t/{parts[0]}/s/{parts[1]}" + (f"/c/{parts[2]}" if parts[2] else "")


def run(args: argparse.Namespace) -> int:
    from pit_streams.producer import Producer

    types = catalogued_types(args.topic, args.catalog)
    name = args.payload_type or types[0]
    if name not in types:
        raise ConfigError(f"{args.topic} carries {', '.join(types)}, not {name}: pass one of them to --type")
    message = parse_payload(message_class(name), args.json_payload, args.text)
    key = key_of_payload(message, args.key)
    event_id = args.event_id or str(uuid.uuid4())
    producer = Producer(PRODUCER_NAME, broker=args.broker, allow_plaintext=args.allow_plaintext)
    producer.envelope_bytes(args.topic, message, key=key, event_id=event_id)  # refuses a bad key before connecting

    async def send() -> None:
        async with producer:
            producer.send(args.topic, message, key=key, event_id=event_id)
            acked = await producer.flush()
        where = ", ".join(f"{tp.topic}[{tp.partition}]@{offset}" for tp, offset in acked.items())
        print(f"sent {where} key={key} event_id={event_id}")

    asyncio.run(send())
    return 0
