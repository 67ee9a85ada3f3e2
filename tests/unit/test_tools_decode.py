"""``tail`` decodes every payload type the catalog lists, and says so when it cannot."""

from __future__ import annotations

from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from pit_streams.catalog import load_catalog
from pit_streams.contract import Key, wrap
from pit_streams.tools.common import message_class
from pit_streams.tools.decode import as_text, decode_value

CATALOG = Path(__file__).resolve().parents[2] / "infra" / "topics.yaml"


def test_every_catalogued_payload_type_decodes() -> None:
    ts = Timestamp(seconds=1_700_000_000)
    seen = 0
    for spec in load_catalog(CATALOG):
        for name in spec.payload_types:
            env = wrap(message_class(name)(), key=Key("demo", "alpha", "0001"), event_id=f"id-{name}",
                       producer="t@1", ts=ts, topic=spec.name)
            out = decode_value(env.SerializeToString(), spec.payload_types)
            assert "error" not in out, (spec.name, name, out)
            assert out["payload_type"] == name and out["event_id"] == f"id-{name}"
            seen += 1
    assert seen >= 5


def test_a_non_envelope_is_named_not_crashed_on() -> None:
    out = decode_value(b"\xff\xfe not protobuf", ["pit.events.v1.TradeFillEvent"])
    assert out == {"error": "not an envelope (15 bytes)"}
    line = as_text({"topic": "t", "partition": 0, "offset": 3, **out})
    assert line == "t[0]@3 ! not an envelope (15 bytes)"
