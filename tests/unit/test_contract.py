"""The platform contract as pure functions, tested without a broker."""

from __future__ import annotations

import uuid

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st
from pit.envelope.v1.envelope_pb2 import EventEnvelope
from pit.events.v1.events_pb2 import NAVUpdateEvent, TradeFillEvent

from pit_streams.contract import (
    Accepted,
    Key,
    Reason,
    Rejection,
    derive_event_id,
    output_event_id,
    parse_key,
    unwrap,
    wrap,
)
from pit_streams.contract.envelope import _DERIVED_ID_NAMESPACE, sha256_hex

KEY = "t/demo/s/alpha/c/0001"


def envelope(**overrides: object) -> EventEnvelope:
    fill = TradeFillEvent(instrument="BTC-USD", qty=3, price_micros=60_000_000_000)
    ts = Timestamp(seconds=1_700_000_000)
    env = wrap(fill, key=Key("demo", "alpha", "0001"), event_id="e-1", producer="p@1", ts=ts)
    for name, value in overrides.items():
        if name == "ts" and value is None:
            env.ClearField("ts")
        else:
            setattr(env, name, value)
    return env


def reject_reason(env: EventEnvelope, record_key: bytes | None = KEY.encode(), **kw: object) -> str:
    out = unwrap(env.SerializeToString(), record_key, TradeFillEvent, **kw)  # type: ignore[arg-type]
    assert isinstance(out, Rejection)
    return out.reason.value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("t/demo/s/alpha/c/0001", Key("demo", "alpha", "0001")),
        ("t/demo/s/alpha", Key("demo", "alpha")),
    ],
)
def test_canonical_keys_parse(text: str, expected: Key) -> None:
    assert parse_key(text) == expected
    assert str(parse_key(text)) == text


@pytest.mark.parametrize(
    "text",
    ["", "t/demo", "t//s/alpha", "t/demo/s/", "t/demo/s/alpha/c/", "x/demo/s/alpha", "t/demo/s/alpha/c/1/extra",
     "t/ demo/s/alpha", "tenant/demo/s/alpha", "venue/"],
)
def test_non_canonical_keys_are_rejected(text: str) -> None:
    out = parse_key(text)
    assert isinstance(out, Rejection) and out.reason is Reason.KEY_INVALID


def test_venue_keys_only_where_allowed() -> None:
    assert isinstance(parse_key("venue/binance"), Rejection)
    assert parse_key("venue/binance", allow_venue=True) == Key(venue="binance")


@given(st.lists(st.text(alphabet=st.characters(whitelist_categories=("L", "N", "Pd", "Pc")), min_size=1, max_size=8),
                min_size=2, max_size=3))
def test_key_round_trip_property(segments: list[str]) -> None:
    text = "t/{}/s/{}".format(*segments[:2]) + (f"/c/{segments[2]}" if len(segments) == 3 else "")
    parsed = parse_key(text)
    assert isinstance(parsed, Key) and str(parsed) == text


def test_valid_envelope_is_accepted_and_decoded() -> None:
    out = unwrap(envelope().SerializeToString(), KEY.encode(), TradeFillEvent)
    assert isinstance(out, Accepted)
    assert out.payload.price_micros == 60_000_000_000 and out.key == Key("demo", "alpha", "0001")


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"event_id": ""}, "missing_field"),
        ({"producer": ""}, "missing_field"),
        ({"ts": None}, "missing_field"),
        ({"tenant": "", "key": "t//s/alpha/c/0001"}, "missing_field"),
        ({"payload": b""}, "missing_field"),
        ({"key": "t/demo/s/alpha/c/"}, "key_invalid"),
        ({"key": "t/other/s/alpha/c/0001"}, "key_mismatch"),
        ({"cell": "0002"}, "key_mismatch"),
        ({"payload_type": "pit.events.v1.NAVUpdateEvent"}, "payload_type_mismatch"),
        ({"payload_sha256": "00" * 32}, "payload_hash_mismatch"),
    ],
)
def test_each_broken_invariant_has_its_reason(overrides: dict[str, object], reason: str) -> None:
    env = envelope(**overrides)
    record_key = env.key.encode() if "key" in overrides else KEY.encode()
    assert reject_reason(env, record_key) == reason


def test_record_key_must_equal_envelope_key() -> None:
    assert reject_reason(envelope(), b"t/demo/s/alpha/c/0002") == "record_key_mismatch"
    assert reject_reason(envelope(), None) == "record_key_mismatch"


def test_tenant_allow_list() -> None:
    assert reject_reason(envelope(), tenants={"acme"}) == "tenant_not_allowed"
    assert isinstance(unwrap(envelope().SerializeToString(), KEY.encode(), TradeFillEvent, tenants={"demo"}),
                      Accepted)


def test_undecodable_payload_with_matching_hash() -> None:
    bad = b"\xff\xff\xff\xff"
    env = envelope(payload=bad, payload_sha256=sha256_hex(bad))
    assert reject_reason(env) == "payload_decode_error"


def test_not_an_envelope() -> None:
    for value in (None, b"", b"\xff\xfe\xfd garbage"):
        out = unwrap(value, KEY.encode(), TradeFillEvent)
        assert isinstance(out, Rejection) and out.reason in (Reason.NOT_ENVELOPE, Reason.MISSING_FIELD)
    out = unwrap(b"\x0a\xff", KEY.encode(), TradeFillEvent)  # truncated length-delimited field
    assert isinstance(out, Rejection) and out.reason is Reason.NOT_ENVELOPE


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    out = unwrap(data, KEY.encode(), TradeFillEvent)
    assert isinstance(out, Rejection | Accepted)


def test_wrap_fills_hash_type_and_key_fields() -> None:
    env = envelope()
    assert env.payload_type == "pit.events.v1.TradeFillEvent"
    assert env.payload_sha256 == sha256_hex(env.payload)
    assert (env.tenant, env.series, env.cell, env.key) == ("demo", "alpha", "0001", KEY)


def test_derived_ids_are_uuid5_and_deterministic() -> None:
    a = derive_event_id("nav-consumer", "src-1", 0)
    assert a == derive_event_id("nav-consumer", "src-1", 0)
    assert a == str(uuid.uuid5(_DERIVED_ID_NAMESPACE, "nav-consumer\x1fsrc-1\x1f0"))
    assert uuid.UUID(a).version == 5
    assert len({a, derive_event_id("nav-consumer", "src-1", 1), derive_event_id("other", "src-1", 0)}) == 3


@given(st.text(), st.text(), st.one_of(st.integers(min_value=0), st.text()))
def test_derived_ids_are_uuid5_of_the_joined_text(app: str, source: str, ordinal: int | str) -> None:
    # derive_event_id builds the UUID from the hex digest by hand: uuid.uuid5 is the reference.
    expected = uuid.uuid5(_DERIVED_ID_NAMESPACE, f"{app}\x1f{source}\x1f{ordinal}")
    assert derive_event_id(app, source, ordinal) == str(expected)


def test_output_ids_derive_from_tenant_scope_and_event_id() -> None:
    env = EventEnvelope(tenant="demo", dedupe_scope="s", event_id="e-1")
    assert output_event_id("nav", env, 2) == derive_event_id("nav", "demo\x1fs\x1fe-1", 2)


def test_wrong_payload_class_bytes_are_caught_by_type_not_decode() -> None:
    nav = NAVUpdateEvent(nav_usd_micros=5)
    env = wrap(nav, key=Key("demo", "alpha", "0001"), event_id="e", producer="p@1", ts=Timestamp(seconds=1))
    assert reject_reason(env) == "payload_type_mismatch"


# Kafka's own vectors for Utils.murmur2 (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java,
# testMurmur2), as signed Java ints; the empty input's value is the one kafka-rust/rdkafka tests quote.
MURMUR2_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
    (b"", 275646681),
]


@pytest.mark.parametrize(("data", "java_int"), MURMUR2_VECTORS)
def test_murmur2_equals_the_java_client(data: bytes, java_int: int) -> None:
    from pit_streams.contract.partition import murmur2, murmur2_partition

    assert murmur2(data) == java_int & 0xFFFFFFFF
    # toPositive(h) % n, as DefaultPartitioner / BuiltInPartitioner.partitionForKey
    for n in (1, 3, 8, 10, 50):
        assert murmur2_partition(data, n) == (java_int & 0x7FFFFFFF) % n


def test_murmur2_partition_known_placements() -> None:
    from pit_streams.contract.partition import murmur2_partition

    # toPositive(-790332482) = 1357151166
    assert murmur2_partition(b"foobar", 10) == 6
    assert murmur2_partition(b"foobar", 50) == 16
    with pytest.raises(ValueError):
        murmur2_partition(b"k", 0)
