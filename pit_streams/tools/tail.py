"""``pit-streams tail TOPIC``: print a topic's records, decoded with the catalog's payload type.

    pit-streams tail pit.v1.acct.nav_update --broker 127.0.0.1:9092 [--json] [--follow]
                     [--key t/demo/s/alpha] [--tenant demo]
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pit_streams.contract.naming import DEAD_LETTER_TOPIC
from pit_streams.tools.common import add_broker_args, catalogued_types, client_config, read_topic
from pit_streams.tools.decode import as_json, as_text, decode_record


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``tail``."""
    p = sub.add_parser("tail", help="print a topic's records, decoded (key, ids, payload; dead-letter reasons)")
    p.add_argument("topic", help="a catalogued topic, e.g. pit.v1.acct.nav_update")
    add_broker_args(p)
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of text")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new records (default: stop at the end)")
    p.add_argument("--key", help="only records whose envelope key is this key or starts with it plus '/'")
    p.add_argument("--tenant", help="only records of this tenant")
    p.set_defaults(func=run)


def matches(record: dict[str, Any], key: str | None, tenant: str | None) -> bool:
    """The ``--key``/``--tenant`` filters; a dead letter matches by the refused record's key too."""
    keys = {record.get("key", "")} | {record.get("refused", {}).get("key", "")}
    tenants = {record.get("tenant", "")} | {record.get("refused", {}).get("tenant", "")}
    if key is not None and not any(k == key or k.startswith(key + "/") for k in keys if k):
        return False
    return tenant is None or tenant in tenants


def run(args: argparse.Namespace) -> int:
    types = catalogued_types(args.topic, args.catalog)
    source_types: dict[str, tuple[str, ...]] | None = None
    if args.topic == DEAD_LETTER_TOPIC:
        from pit_streams.catalog import load_catalog

        source_types = {spec.name: spec.payload_types for spec in load_catalog(args.catalog)}
    show = as_json if args.json else as_text
    for msg in read_topic(client_config(args), args.topic, follow=args.follow):
        record = decode_record(msg, types, source_types)
        if matches(record, args.key, args.tenant):
            print(show(record), flush=args.follow)
    sys.stdout.flush()
    return 0
