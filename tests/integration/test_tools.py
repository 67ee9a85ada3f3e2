"""``pit-streams send``, ``tail`` and ``dead-letters`` against the real broker, through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from itapp import BOOM, make_app
from kafka_support import REPO_ROOT
from pit.events.v1.events_pb2 import NAVUpdateEvent, TradeFillEvent
from support import KEY, Raw, Scenario, derived, fill, handled, new_worker, produce, read_all, run_until

import pit_streams

pytestmark = pytest.mark.kafka


def cli(*args: str, catalog: Path, bootstrap: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pit_streams.cli", *args, "--broker", bootstrap, "--catalog", str(catalog)],
        cwd=REPO_ROOT, env=dict(os.environ), stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip


def _catalog(sc: Scenario, tmp_path: Path) -> Path:
    path = tmp_path / "topics.yaml"
    path.write_text(sc.catalog_yaml())
    return path


async def test_send_builds_an_envelope_the_worker_accepts_and_tail_decodes_it(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    sc = Scenario(kafka_bootstrap, partitions=2)
    sc.create()
    catalog = _catalog(sc, tmp_path)
    payload = {"tenant_id": "demo", "series_id": "alpha", "cell_id": "0007", "instrument": "BTC-USD", "qty": 2,
               "price_micros": "5000000"}
    sent = cli("send", sc.source, "--json", json.dumps(payload), "--event-id", "fill-1", catalog=catalog,
               bootstrap=kafka_bootstrap)
    assert sent.returncode == 0, sent.stderr
    assert "key=t/demo/s/alpha/c/0007 event_id=fill-1" in sent.stdout
    text = cli("send", sc.source, "--text", 'instrument: "ETH" qty: 1 price_micros: 3', "--key",
               "t/other/s/beta/c/0001", catalog=catalog, bootstrap=kafka_bootstrap)
    assert text.returncode == 0, text.stderr

    worker = new_worker("confluent", kafka_bootstrap, make_app(sc.name, sc.source, sc.output), tmp_path / "d")
    await worker.start()
    try:
        await run_until([worker], lambda: handled(worker) == 2, what="both sent records handled")
    finally:
        await worker.stop()
    assert worker.metrics.processed == 2 and not worker.metrics.rejected  # valid envelopes, right partitions

    out = cli("tail", sc.output, "--json", catalog=catalog, bootstrap=kafka_bootstrap)
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert sorted(r["key"] for r in records) == ["t/demo/s/alpha/c/0007", "t/other/s/beta/c/0001"]
    nav = next(r for r in records if r["tenant"] == "demo")
    assert nav["payload_type"] == "pit.events.v1.NAVUpdateEvent"
    assert nav["payload"]["cash_liquid_usd_micros"] == "-10000000"  # int64 as JSON string, exact

    by_tenant = cli("tail", sc.source, "--tenant", "other", catalog=catalog, bootstrap=kafka_bootstrap)
    [line] = by_tenant.stdout.splitlines()
    assert "key=t/other/s/beta/c/0001" in line and 'instrument: "ETH"' in line and "TradeFillEvent" in line
    by_key = cli("tail", sc.source, "--key", "t/demo/s/alpha", catalog=catalog, bootstrap=kafka_bootstrap)
    [line] = by_key.stdout.splitlines()
    assert "event_id=fill-1" in line


def test_send_refuses_a_payload_of_the_wrong_shape_in_one_line(kafka_bootstrap: str, tmp_path: Path) -> None:
    sc = Scenario(kafka_bootstrap)
    res = cli("send", sc.source, "--json", '{"qty": 1.5}', "--key", str(KEY), catalog=_catalog(sc, tmp_path),
              bootstrap=kafka_bootstrap)
    assert res.returncode == 2
    [line] = res.stderr.strip().splitlines()
    assert line.startswith("pit-streams: payload is not a valid pit.events.v1.TradeFillEvent")


def _fixed_app(sc: Scenario) -> pit_streams.App:
    """The same app after the bug behind the BOOM fills is fixed."""
    app = pit_streams.App(sc.name, version="1.0.1")

    @app.handler(sc.source, TradeFillEvent, emits={sc.output: NAVUpdateEvent})
    def on_fill(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
        ctx.emit(sc.output, NAVUpdateEvent(cash_liquid_usd_micros=-fill.qty))

    return app


async def dead_lettered_poison(kafka_bootstrap: str, tmp_path: Path) -> tuple[Scenario, Path, Raw]:
    """A scenario whose worker dead-lettered one poison fill (and processed a good one); its catalog."""
    sc = Scenario(kafka_bootstrap)
    sc.create()
    catalog = _catalog(sc, tmp_path)
    poison = fill(instrument=BOOM)
    produce(kafka_bootstrap, sc.source, [poison, fill()])
    broken = new_worker("confluent", kafka_bootstrap, make_app(sc.name, sc.source, sc.output), tmp_path / "d")
    await broken.start()
    try:
        await run_until([broken], lambda: handled(broken) == 2, what="the poison dead-lettered")
    finally:
        await broken.stop()
    return sc, catalog, poison


async def test_dead_letters_listed_then_replayed_exactly_once(kafka_bootstrap: str, tmp_path: Path) -> None:
    sc, catalog, poison = await dead_lettered_poison(kafka_bootstrap, tmp_path)

    listed = cli("dead-letters", "--group", sc.name, catalog=catalog, bootstrap=kafka_bootstrap)
    [line] = listed.stdout.splitlines()
    assert "[handler_error]" in line and f"{sc.source}[0]@0" in line and "boom: this fill is poison" in line
    tail = cli("tail", "pit.v1.ops.dead_letter", "--json", "--key", str(KEY), catalog=catalog,
               bootstrap=kafka_bootstrap)
    mine = [json.loads(x) for x in tail.stdout.splitlines() if sc.source in x]
    assert mine[0]["reason"] == "handler_error" and mine[0]["refused"]["event_id"] == poison.event_id
    assert mine[0]["refused"]["payload"]["instrument"] == BOOM  # the refused record, decoded with its type

    ends = len(read_all(kafka_bootstrap, sc.source))
    dry = cli("dead-letters", "replay", "--group", sc.name, "--reason", "handler_error", "--since", "1h",
              catalog=catalog, bootstrap=kafka_bootstrap)
    assert dry.returncode == 0 and "would replay" in dry.stdout and "dry run: 1 would be replayed" in dry.stderr
    assert len(read_all(kafka_bootstrap, sc.source)) == ends  # a dry run changes nothing
    for _ in range(2):  # the second run finds the first one's copy and sends nothing
        done = cli("dead-letters", "replay", "--group", sc.name, "--apply", catalog=catalog,
                   bootstrap=kafka_bootstrap)
        assert done.returncode == 0, done.stderr
    assert "skip" in done.stdout and "0 replayed" in done.stderr
    source = read_all(kafka_bootstrap, sc.source)
    assert len(source) == ends + 1 and source[-1].value == poison.value and source[-1].key == poison.key

    fixed_app = _fixed_app(sc)
    fixed = new_worker("confluent", kafka_bootstrap, fixed_app, tmp_path / "d")
    await fixed.start()
    try:
        await run_until([fixed], lambda: handled(fixed) == 1, what="the replayed record handled")
    finally:
        await fixed.stop()
    ids = [o.envelope.event_id for o in read_all(kafka_bootstrap, sc.output)]
    assert ids.count(derived(fixed_app, poison.event_id)) == 1
