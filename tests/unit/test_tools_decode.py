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


class _Msg:
    """The parts of a confluent-kafka ``Message`` that decode_record reads."""

    def __init__(self, value: bytes | None, headers: list[tuple[str, bytes | None]]) -> None:
        self._value, self._headers = value, headers

    def topic(self) -> str:
        return "pit.v1.ops.dead_letter"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 7

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes | None]]:
        return self._headers


def _envelope(ts: Timestamp, payload_type: str = "") -> bytes:
    from pit.events.v1.events_pb2 import TradeFillEvent

    env = wrap(TradeFillEvent(qty=1), key=Key("demo", "alpha", "0001"), event_id="e-1", producer="t@1",
               ts=Timestamp(seconds=1), topic="pit.v1.exec.trade_fill")
    env.ts.CopyFrom(ts)
    if payload_type:
        env.payload_type = payload_type
    return env.SerializeToString()


def test_an_out_of_range_ts_is_shown_not_crashed_on() -> None:
    out = decode_value(_envelope(Timestamp(seconds=2**40)), ["pit.events.v1.TradeFillEvent"])
    assert out["ts"] == f"invalid ({2**40} s, 0 ns)" and out["payload"]["qty"] == "1"


def test_an_uncatalogued_payload_type_is_flagged_not_decoded_as_another() -> None:
    value = _envelope(Timestamp(seconds=1), "pit.events.v1.NAVUpdateEvent")
    out = decode_value(value, ["pit.events.v1.TradeFillEvent"])
    assert "payload" not in out and "not catalogued" in out["error"] and "NAVUpdateEvent" in out["error"]


def test_hostile_dead_letter_headers_do_not_stop_the_tail() -> None:
    from pit_streams.tools.decode import decode_record

    headers: list[tuple[str, bytes | None]] = [("pit.reason", None), ("pit.detail", None),
                                               ("pit.source.topic", b"\xff\xfe"), ("pit.source.offset", None)]
    out = decode_record(_Msg(b"\x00garbage", headers), [], {})
    assert out["reason"] == "" and out["source"].startswith("\ufffd") and "error" in out
    as_text(out)  # renders
    broken = decode_record(_Msg(_envelope(Timestamp(seconds=1)), [("pit.reason", b"x")]), [], None)
    as_text(broken)
