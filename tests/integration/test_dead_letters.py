"""Every reject reason reaches pit.v1.ops.dead_letter as an envelope of the source record's bytes exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
from itapp import BOOM, make_app
from pit.envelope.v1.envelope_pb2 import EventEnvelope
from pit.events.v1.events_pb2 import NAVUpdateEvent
from support import (
    KEY,
    Raw,
    Scenario,
    dead_letters,
    derived,
    envelope,
    fill,
    new_worker,
    produce,
    raw_envelope,
    read_all,
    run_until,
)

from pit_streams.contract import Key, derive_event_id, parse_key, sha256_hex, validate
from pit_streams.runtime import deadletter

pytestmark = pytest.mark.kafka


def _with(**fields: object) -> EventEnvelope:
    env = envelope()
    for name, value in fields.items():
        setattr(env, name, value)
    return env


def rejects() -> list[tuple[str, Raw]]:
    """(reason, record) for each reason, in the order they are produced."""
    garbage = b"\xff\xff\xff"
    return [
        ("not_envelope", Raw(str(KEY).encode(), b"\xff\xfe not an envelope", [("trace", b"t-1")])),
        ("missing_field", Raw(None, EventEnvelope(event_id="only-an-id").SerializeToString())),
        ("key_invalid", raw_envelope(_with(key="t/demo/alpha"))),
        ("key_mismatch", raw_envelope(_with(cell="0002"))),
        ("record_key_mismatch", raw_envelope(envelope(), record_key=b"t/demo/s/alpha/c/0002")),
        ("payload_type_mismatch", raw_envelope(_with(payload_type="pit.events.v1.NAVUpdateEvent"))),
        ("payload_hash_mismatch", raw_envelope(_with(payload_sha256="0" * 64))),
        ("payload_decode_error", raw_envelope(_with(payload=garbage, payload_sha256=sha256_hex(garbage)))),
        ("tenant_not_allowed", fill(key=Key("other", "alpha", "0001"))),
        ("handler_error", fill(instrument=BOOM)),
    ]


async def test_each_reject_reason_is_dead_lettered_byte_for_byte(
    transport: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    sc = Scenario(kafka_bootstrap)
    sc.create()
    app = make_app(sc.name, sc.source, sc.output, tenants={"demo"})
    bad = rejects()
    valid = [fill(), fill(), fill()]
    # valid records interleaved: first, in the middle, last
    plan: list[tuple[str | None, Raw]] = [(None, valid[0]), *bad[:5], (None, valid[1]), *bad[5:], (None, valid[2])]
    records = [r for _, r in plan]
    offsets = produce(kafka_bootstrap, sc.source, records)

    worker = new_worker(transport, kafka_bootstrap, app, tmp_path)
    await worker.start()
    try:
        await run_until(
            [worker],
            lambda: worker.metrics.committed_offsets.get(f"{sc.source}[0]") == len(records),
            what="every record committed",
        )
    finally:
        await worker.stop()

    by_offset = {int(r.headers[deadletter.SOURCE_OFFSET]): r for r in dead_letters(kafka_bootstrap, sc.name)}
    assert len(by_offset) == len(bad)
    for (reason, sent), offset in zip(plan, offsets, strict=True):
        if reason is None:
            assert offset not in by_offset
            continue
        dl = by_offset[offset]
        assert (dl.value, dl.key) == (sent.value, sent.key), reason
        assert dl.headers[deadletter.REASON] == reason.encode()
        assert dl.headers[deadletter.DETAIL], reason
        assert dl.headers[deadletter.SOURCE_TOPIC] == sc.source.encode()
        assert dl.headers[deadletter.SOURCE_PARTITION] == b"0"
        assert dl.headers[deadletter.GROUP] == sc.name.encode()
        for name, value in sent.headers:  # the source record's own headers travel along, renamed
            assert dl.source_headers[name] == value
            assert name not in dl.headers
        # The dead letter is itself a valid envelope, keyed by the source's canonical key when it had one.
        expected_key = sent.key if sent.key and isinstance(parse_key(sent.key.decode()), Key) else b"venue/pit-streams"
        assert dl.record.key == expected_key, reason
        assert isinstance(validate(dl.envelope, deadletter.PAYLOAD_TYPE, record_key=dl.record.key, allow_venue=True),
                          Key), reason
        assert dl.envelope.event_id == derive_event_id(sc.name, f"{sc.source}/0/{offset}", "dead_letter")
    assert b"boom" in by_offset[offsets[-2]].headers[deadletter.DETAIL]

    outputs = read_all(kafka_bootstrap, sc.output)
    assert [o.envelope.event_id for o in outputs] == [derived(app, v.event_id) for v in valid]
    cash = [NAVUpdateEvent.FromString(o.envelope.payload).cash_liquid_usd_micros for o in outputs]
    assert cash == [-1_000_000, -2_000_000, -3_000_000]
    assert worker.metrics.processed == 3
    assert sum(worker.metrics.rejected.values()) == len(bad)
