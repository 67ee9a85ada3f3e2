"""Signed envelopes: what is covered, and a consumer that requires its inputs' owner's signature."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from pit.envelope.v1.envelope_pb2 import EventEnvelope
from pit.events.v1.events_pb2 import NAVUpdateEvent, TradeFillEvent

import pit_streams
from pit_streams.contract.signing import (
    Signer,
    TrustPolicy,
    load_trust_bundle,
    signed_bytes,
    signing_settings,
    verify_signature,
)
from pit_streams.errors import ConfigError
from pit_streams.runtime.worker import Worker, WorkerSettings
from pit_streams.testing import TestHarness
from pit_streams.transport.memory import MemoryTransport

FILLS = "pit.v1.exec.trade_fill"
NAV = "pit.v1.acct.nav_update"
CELL = "t/demo/s/alpha/c/0001"
OWNER = "tradefill-producer"  # the catalog's owner of pit.v1.exec.trade_fill


def pem_public(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def signed_app() -> pit_streams.App:
    app = pit_streams.App("signed-consumer", version="1.0.0", signed_inputs={FILLS})

    @app.handler(FILLS, TradeFillEvent, emits={NAV: NAVUpdateEvent})
    def on_fill(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
        ctx.emit(NAV, NAVUpdateEvent(cash_liquid_usd_micros=-fill.qty))

    return app


class TrustingHarness(TestHarness):
    __test__ = False
    trust: TrustPolicy | None = None

    def _new_worker(self) -> Worker:
        return Worker(self.app, MemoryTransport(self.broker), WorkerSettings(self.data_dir, trust=self.trust),
                      self.metrics)


def test_every_field_but_the_signature_is_covered() -> None:
    key = Ed25519PrivateKey.generate()
    env = EventEnvelope(event_id="e1", key=CELL, tenant="demo", series="alpha", cell="0001", payload=b"\x08\x01")
    signed = EventEnvelope.FromString(Signer(key).sign(env.SerializeToString()))
    assert verify_signature(signed, key.public_key())
    assert signed_bytes(signed) == signed_bytes(env)  # the signature itself is not signed
    for name, value in (("payload", b"\x08\x02"), ("key", "t/evil/s/alpha/c/0001"), ("producer", "x@1")):
        tampered = EventEnvelope()
        tampered.CopyFrom(signed)
        setattr(tampered, name, value)
        assert not verify_signature(tampered, key.public_key()), name
    tampered.CopyFrom(signed)
    tampered.ts.seconds += 1
    assert not verify_signature(tampered, key.public_key())


async def test_only_the_owners_signature_is_accepted(tmp_path: Path) -> None:
    owner, impostor = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    bundle = tmp_path / "trust.json"
    bundle.write_text(json.dumps({OWNER: pem_public(owner), "someone-else": pem_public(impostor)}))
    app = signed_app()
    TrustingHarness.trust = TrustPolicy.build(app.signed_inputs, {FILLS: OWNER}, load_trust_bundle(bundle))
    async with TrustingHarness(app, data_dir=tmp_path / "d", catalog=False) as h:
        good = await h.send(FILLS, TradeFillEvent(qty=1), key=CELL, run=False)
        forged = await h.send(FILLS, TradeFillEvent(qty=2), key=CELL, run=False)
        unsigned = await h.send(FILLS, TradeFillEvent(qty=3), key=CELL, run=False)
        log = h.broker.topics[FILLS][0]
        log[0].value = Signer(owner).sign(good.value or b"")
        log[1].value = Signer(impostor).sign(forged.value or b"")  # signed, but not by the topic's owner
        await h.run()
        assert [n.cash_liquid_usd_micros for _, n in h.outputs(NAV)] == [-1]
        dead = h.dead_letters
        assert [(d.reason, d.source_offset) for d in dead] == [("bad_signature", 1), ("bad_signature", 2)]
        assert "unsigned" in dead[1].detail and "does not verify" in dead[0].detail
        assert unsigned.value == dead[1].value  # the refused record is kept whole


def test_a_worker_requiring_signatures_without_a_trust_bundle_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--trust-bundle"):
        signing_settings(signed_app(), None, None, None)
    with pytest.raises(ConfigError, match="--trust-bundle"):
        TestHarness(signed_app(), data_dir=tmp_path, catalog=False)


def test_a_trust_bundle_without_the_owners_key_is_refused(tmp_path: Path) -> None:
    bundle = tmp_path / "trust.json"
    bundle.write_text(json.dumps({"someone-else": pem_public(Ed25519PrivateKey.generate())}))
    with pytest.raises(ConfigError, match="no key for"):
        TrustPolicy.build({FILLS}, {FILLS: OWNER}, load_trust_bundle(bundle))
    bundle.write_text("[]")
    with pytest.raises(ConfigError, match="JSON object"):
        load_trust_bundle(bundle)


def test_the_signing_key_file_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_text("not a key")
    with pytest.raises(ConfigError, match="Ed25519 PEM private key"):
        Signer.from_file(path)
    path.write_bytes(Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    assert Signer.from_file(path).sign(EventEnvelope(event_id="x").SerializeToString())


def test_k8s_mounts_the_signing_key_and_the_trust_bundle_only_when_configured() -> None:
    from apps.nav import build_app
    from pit_streams.k8s import RenderSettings, _deployment

    def pod(app: pit_streams.App, settings: RenderSettings) -> tuple[dict[str, str], dict[str, dict[str, object]]]:
        spec = _deployment(app, "apps.x", settings)["spec"]["template"]["spec"]
        env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
        return env, {v["name"]: v for v in spec["volumes"]}

    env, volumes = pod(build_app(), RenderSettings())
    assert "PIT_SIGNING_KEY" not in env and "signing-key" not in volumes and "trust-bundle" not in volumes
    env, volumes = pod(signed_app(), RenderSettings(sign_outputs=True))
    assert env["PIT_SIGNING_KEY"] == "/etc/pit/signing/signing.key"
    assert env["PIT_TRUST_BUNDLE"] == "/etc/pit/trust/trust.json"
    assert volumes["signing-key"]["secret"] == {"secretName": "signed-consumer-signing-key", "defaultMode": 0o440,
                                                "items": [{"key": "signing.key", "path": "signing.key"}]}
    assert volumes["trust-bundle"]["configMap"]["name"] == "pit-trust-bundle"  # type: ignore[index]
