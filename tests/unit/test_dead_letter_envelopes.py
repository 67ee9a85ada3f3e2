"""Dead letters are envelopes carrying the refused bytes exactly (ADR 0005)."""

from __future__ import annotations

from pathlib import Path

from pit.events.v1.events_pb2 import NAVUpdateEvent, TradeFillEvent

import pit_streams
from pit_streams.contract import Key, derive_event_id, validate
from pit_streams.runtime import deadletter
from pit_streams.testing import TestHarness

FILLS = "pit.v1.exec.trade_fill"
NAV = "pit.v1.acct.nav_update"
KEY = "t/demo/s/alpha/c/0001"


def make_app() -> pit_streams.App:
    app = pit_streams.App("dl-test", version="2.0.0")

    @app.handler(FILLS, TradeFillEvent, emits={NAV: NAVUpdateEvent})
    def on_fill(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
        ctx.emit(NAV, NAVUpdateEvent(nav_usd_micros=fill.qty))

    return app


async def test_dead_letter_is_a_valid_envelope_keyed_by_the_refused_records_canonical_key(tmp_path: Path) -> None:
    async with TestHarness(make_app(), data_dir=tmp_path, catalog=False) as h:
        await h.send(FILLS, b"\x00garbage", key=KEY)
        [dl] = h.dead_letters
        env = dl.envelope
        assert dl.value == b"\x00garbage" and dl.key == KEY.encode()
        assert dl.record_key == KEY.encode()
        assert validate(env, deadletter.PAYLOAD_TYPE, record_key=dl.record_key, allow_venue=True) == Key(
            "demo", "alpha", "0001"
        )
        assert (env.tenant, env.series, env.cell) == ("demo", "alpha", "0001")
        assert env.producer == "dl-test@2.0.0" and env.topic == pit_streams.DEAD_LETTER_TOPIC
        assert env.event_id == derive_event_id("dl-test", f"{FILLS}/0/0", "dead_letter")
        assert env.event_type == "dead_letter.not_envelope" and env.idempotency_key == f"{FILLS}/0/0"


async def test_a_non_canonical_key_gets_the_ops_key_and_the_original_key_in_a_header(tmp_path: Path) -> None:
    async with TestHarness(make_app(), data_dir=tmp_path, catalog=False) as h:
        await h.send(FILLS, b"junk", key="not/a/key")
        await h.send(FILLS, TradeFillEvent(qty=1))
        [dl] = h.dead_letters
        assert dl.record_key == b"venue/pit-streams" and dl.envelope.key == "venue/pit-streams"
        assert dl.key == b"not/a/key" and dl.value == b"junk"
        assert dl.envelope.tenant == ""
        assert len(h.outputs(NAV)) == 1


async def test_source_headers_cannot_forge_the_frameworks(tmp_path: Path) -> None:
    async with TestHarness(make_app(), data_dir=tmp_path, catalog=False) as h:
        forged = [("pit.reason", b"handler_error"), ("pit.source.topic", b"pit.v1.acct.nav_update"), ("x", b"1")]
        h.broker.append(FILLS, b"junk", KEY.encode(), forged)
        await h.run()
        [dl] = h.dead_letters
        assert (dl.reason, dl.source_topic) == ("not_envelope", FILLS)
        assert dl.headers["pit.source.header.pit.reason"] == b"handler_error"
        assert dl.headers["pit.source.header.pit.source.topic"] == b"pit.v1.acct.nav_update"
        assert dl.headers["pit.source.header.x"] == b"1"
        names = [name for name, _ in h.broker.records(pit_streams.DEAD_LETTER_TOPIC)[0].headers]
        assert names.count("pit.reason") == 1 and names.count("pit.source.topic") == 1


async def test_a_null_value_is_told_apart_from_an_empty_one(tmp_path: Path) -> None:
    async with TestHarness(make_app(), data_dir=tmp_path, catalog=False) as h:
        await h.send(FILLS, None, key=KEY)
        await h.send(FILLS, b"", key=KEY)
        null, empty = h.dead_letters
        assert null.value is None and empty.value == b""


async def test_a_one_mib_refused_record_fits_the_dead_letter_topic(tmp_path: Path) -> None:
    big = b"\x07" * (1024 * 1024)
    async with TestHarness(make_app(), data_dir=tmp_path, catalog=False) as h:
        await h.send(FILLS, big, key=KEY)
        [dl] = h.dead_letters
        assert dl.value == big
        [rec] = h.broker.records(pit_streams.DEAD_LETTER_TOPIC)
        size = len(rec.value or b"") + sum(len(k) + len(v) for k, v in rec.headers)
        assert size < 4 * 1024 * 1024 - 1024  # the topic's max.message.bytes, with room for framing
