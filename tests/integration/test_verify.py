"""Issue 13 on the real broker: verify a slice the worker wrote, catch a forged output and a
non-deterministic handler, attest ranges on both transports, and signed inputs and outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from itapp import BOOM, make_app
from kafka_support import REPO_ROOT
from pit.events.v1.events_pb2 import NAVUpdateEvent, TradeFillEvent
from support import Raw, Scenario, dead_letters, fill, handled, new_worker, produce, read_all, run_until

import pit_streams
from pit_streams.contract import Key
from pit_streams.contract.signing import Signer, TrustPolicy, load_trust_bundle
from pit_streams.runtime.worker import WorkerSettings
from pit_streams.transport.factory import TRANSPORTS, make_transport
from pit_streams.verify.attest import attest
from pit_streams.verify.command import verify_app
from pit_streams.verify.ranges import OffsetRange, total_root

pytestmark = pytest.mark.kafka

APP_MODULE = "tests.integration.worker_app"
KEYS = [Key("demo", "alpha", f"{i:04d}") for i in range(1, 6)]


def cli(sc: Scenario, transport: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIT_IT_APP": sc.name, "PIT_IT_SOURCE": sc.source, "PIT_IT_OUTPUT": sc.output}
    return subprocess.run([sys.executable, "-m", "pit_streams.cli", *args, "--broker", sc.bootstrap,
                           "--transport", transport], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=180, check=False)


def key_files(tmp_path: Path, owner: str) -> tuple[Ed25519PrivateKey, Path, Path]:
    """A key made at test time (none is committed): its PEM file and a trust bundle naming it."""
    key = Ed25519PrivateKey.generate()
    pem = tmp_path / "signing.key"
    pem.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    bundle = tmp_path / "trust.json"
    public = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    bundle.write_text(json.dumps({owner: public}))
    return key, pem, bundle


async def test_verify_a_signed_slice_then_a_forged_output(transport: str, kafka_bootstrap: str,
                                                          tmp_path: Path) -> None:
    sc = Scenario(kafka_bootstrap, partitions=2)
    sc.create()
    app = make_app(sc.name, sc.source, sc.output)
    _, pem, bundle = key_files(tmp_path, sc.name)
    fills = [fill(1 + i, key=KEYS[i % len(KEYS)]) for i in range(20)]
    records = [Raw(r.key, r.value, [], pit_streams.contract.murmur2_partition(r.key, 2), r.event_id) for r in fills]
    records.append(Raw(str(KEYS[0]).encode(), b"not an envelope", [], 0))  # a dead letter: not_envelope
    records.append(fill(1, instrument=BOOM, key=KEYS[1]))  # a dead letter: handler_error
    records[-1] = Raw(records[-1].key, records[-1].value, [], pit_streams.contract.murmur2_partition(
        records[-1].key, 2))
    produce(kafka_bootstrap, sc.source, records)
    worker = new_worker(transport, kafka_bootstrap, app, tmp_path / "data",
                        settings=WorkerSettings(tmp_path / "data", signer=Signer.from_file(pem)))
    await worker.start()
    try:
        await run_until([worker], lambda: handled(worker) >= len(records), what="the slice handled")
    finally:
        await worker.stop()
    outputs = read_all(kafka_bootstrap, sc.output)
    assert len(outputs) == 20 and all(o.envelope.signature for o in outputs)

    ok = cli(sc, transport, "verify", "-A", APP_MODULE, "--trust-bundle", str(bundle))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "verify OK: 22 input(s) replayed, 20 output(s) and 2 dead letter(s) matched" in ok.stdout
    assert "replayed" in ok.stderr  # progress goes to stderr

    # A forged nav update: a real derived event_id, another payload (signed by nobody).
    real = outputs[7]
    forged = real.envelope
    nav = NAVUpdateEvent.FromString(forged.payload)
    nav.cash_liquid_usd_micros += 1_000_000_000
    forged.payload = nav.SerializeToString()
    forged.ClearField("signature")
    produce(kafka_bootstrap, sc.output, [Raw(real.key, forged.SerializeToString(), [], real.partition)])
    bad = cli(sc, transport, "verify", "-A", APP_MODULE)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert f"same id, different bytes: {forged.event_id}" in bad.stdout
    assert "payload.cash_liquid_usd_micros:" in bad.stdout
    assert "verify MISMATCH" in bad.stdout

    usage = cli(sc, transport, "verify", "-A", APP_MODULE, "--from", "5", "--to", "1")
    assert usage.returncode == 2 and "--from" in usage.stderr


async def test_a_handler_reading_the_wall_clock_is_non_deterministic(transport: str, kafka_bootstrap: str,
                                                                   tmp_path: Path) -> None:
    sc = Scenario(kafka_bootstrap)
    sc.create()
    app = pit_streams.App(sc.name, version="1.0.0")

    @app.handler(sc.source, TradeFillEvent, emits={sc.output: NAVUpdateEvent})
    def on_fill(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
        ctx.emit(sc.output, NAVUpdateEvent(ts=fill.ts, nav_usd_micros=time.time_ns()))  # not from the log

    produce(kafka_bootstrap, sc.source, [fill(q) for q in (1, 2, 3)])
    worker = new_worker(transport, kafka_bootstrap, app, tmp_path / "data")
    await worker.start()
    try:
        await run_until([worker], lambda: worker.metrics.processed >= 3, what="3 fills processed")
    finally:
        await worker.stop()
    client = make_transport(transport, kafka_bootstrap)
    await client.start(None)
    try:
        report = await verify_app(app, client)
    finally:
        await client.stop()
    first_output = read_all(kafka_bootstrap, sc.output)[0].envelope.event_id
    assert report.nondeterministic is not None and report.nondeterministic.event_id == first_output
    assert report.nondeterministic.diff[0].startswith("payload.nav_usd_micros:")
    assert not report.ok


async def test_attest_is_the_same_on_both_transports_and_stable_under_appends(kafka_bootstrap: str) -> None:
    sc = Scenario(kafka_bootstrap, partitions=2)
    sc.create(output=False)
    produce(kafka_bootstrap, sc.source, [fill(q, partition=q % 2) for q in range(10)])

    async def roots(kind: str, offsets: OffsetRange) -> list[tuple[str, int, bytes]]:
        client = make_transport(kind, kafka_bootstrap)
        await client.start(None)
        try:
            found = await attest(client, [sc.source], None, offsets)
        finally:
            await client.stop()
        return [(str(r.tp), r.count, r.root) for r in found] + [("total", 0, total_root(found))]

    first = {kind: await roots(kind, OffsetRange()) for kind in TRANSPORTS}
    again = {kind: await roots(kind, OffsetRange()) for kind in TRANSPORTS}
    assert first["confluent"] == first["aiokafka"] == again["confluent"] == again["aiokafka"]
    assert [count for _, count, _ in first["confluent"][:2]] == [5, 5]
    # One more input: the whole range's root changes, the range that was attested does not.
    produce(kafka_bootstrap, sc.source, [fill(99, partition=1)])
    grown = await roots("confluent", OffsetRange())
    assert grown[0] == first["confluent"][0] and grown[1] != first["confluent"][1] and grown[2] != first["confluent"][2]
    assert await roots("aiokafka", OffsetRange(0, 5)) == first["confluent"]
    cli_out = cli(sc, "aiokafka", "attest", sc.source)
    assert cli_out.returncode == 0, cli_out.stderr
    assert cli_out.stdout.splitlines()[-1].endswith(grown[2][2].hex())


async def test_a_consumer_requiring_signatures_accepts_only_the_owners(transport: str, kafka_bootstrap: str,
                                                                      tmp_path: Path) -> None:
    sc = Scenario(kafka_bootstrap)
    sc.create()
    owner, impostor = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    bundle = tmp_path / "trust.json"
    bundle.write_text(json.dumps({"fills-owner": owner.public_key().public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()}))
    app = make_app(sc.name, sc.source, sc.output)
    app.signed_inputs = {sc.source}
    trust = TrustPolicy.build(app.signed_inputs, {sc.source: "fills-owner"}, load_trust_bundle(bundle))
    good, other, unsigned = fill(1), fill(2), fill(3)
    produce(kafka_bootstrap, sc.source, [
        Raw(good.key, Signer(owner).sign(good.value or b"")),
        Raw(other.key, Signer(impostor).sign(other.value or b"")),
        unsigned,
    ])
    worker = new_worker(transport, kafka_bootstrap, app, tmp_path / "data",
                        settings=WorkerSettings(tmp_path / "data", trust=trust))
    await worker.start()
    try:
        await run_until([worker], lambda: handled(worker) >= 3, what="3 fills handled")
    finally:
        await worker.stop()
    [nav] = read_all(kafka_bootstrap, sc.output)
    assert nav.envelope.causation_id == good.event_id
    dead = sorted(dead_letters(kafka_bootstrap, sc.name), key=lambda d: d.record.offset)
    assert sorted((d.headers["pit.reason"], d.headers["pit.source.offset"]) for d in dead) == [
        (b"bad_signature", b"1"), (b"bad_signature", b"2")]
