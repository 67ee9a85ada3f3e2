"""Signed envelopes (the envelope's ``signature`` field): Ed25519 over a canonical encoding.

The signed bytes are the envelope serialised deterministically with ``signature`` cleared:
every other field (docs/adr/0008-verification.md lists them) is covered, so changing any of
them — payload, key, ids, ``ts``, ``producer`` — breaks the signature. ``cryptography`` is
imported only when a key is loaded: ``import pit_streams`` stays light.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pit.envelope.v1.envelope_pb2 import EventEnvelope

from pit_streams.contract.reasons import Reason, Rejection
from pit_streams.errors import ConfigError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    from pit_streams.app import App

SIGNING_KEY_ENV = "PIT_SIGNING_KEY"
TRUST_BUNDLE_ENV = "PIT_TRUST_BUNDLE"


def signed_bytes(env: EventEnvelope) -> bytes:
    """What a signature covers: ``env`` with ``signature`` cleared, serialised deterministically."""
    copy = EventEnvelope()
    copy.CopyFrom(env)
    copy.ClearField("signature")
    return bytes(copy.SerializeToString(deterministic=True))


def load_signing_key(path: str | Path) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM file (mounted from a Secret); ``ConfigError`` naming the fix."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"signing key {path}: {exc}: mount an unencrypted Ed25519 PEM private key there") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"signing key {path} is not an Ed25519 key:"
                          " generate one with 'openssl genpkey -algorithm ed25519'")
    return key


def load_public_key(pem: str, where: str) -> Ed25519PublicKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{where}: not an Ed25519 public key")
    return key


class Signer:
    """Signs envelope bytes with one private key."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key

    @classmethod
    def from_file(cls, path: str | Path) -> Signer:
        return cls(load_signing_key(path))

    def sign(self, value: bytes) -> bytes:
        env = EventEnvelope.FromString(value)
        env.signature = self._key.sign(signed_bytes(env))
        return bytes(env.SerializeToString(deterministic=True))

    def wrap_send(self, send: Callable[..., None]) -> Callable[..., None]:
        """``send`` with every value signed first: outputs and dead letters alike."""

        def signed_send(topic: str, value: bytes | None, *args: object, **kwargs: object) -> None:
            send(topic, self.sign(value) if value else value, *args, **kwargs)

        return signed_send


def verify_signature(env: EventEnvelope, key: Ed25519PublicKey) -> bool:
    from cryptography.exceptions import InvalidSignature

    if not env.signature:
        return False
    try:
        key.verify(env.signature, signed_bytes(env))
    except InvalidSignature:
        return False
    return True


def load_trust_bundle(path: str | Path) -> dict[str, Ed25519PublicKey]:
    """The trust bundle (mounted from a ConfigMap or Secret): a JSON object mapping each owner (an
    app name, as the catalog's ``owner``) to its PEM Ed25519 public key."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"trust bundle {path}: {exc}: mount a JSON object {{owner: PEM public key}}") from None
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise ConfigError(f"trust bundle {path} must be a JSON object {{owner: PEM public key}}")
    return {owner: load_public_key(pem, f"trust bundle {path}, owner {owner!r}") for owner, pem in raw.items()}


@dataclass(frozen=True)
class TrustPolicy:
    """Which input topics must be signed, by whom (the topic's catalogued owner), with which key."""

    owners: Mapping[str, str]  # topic -> owner whose signature it needs
    keys: Mapping[str, Ed25519PublicKey]  # owner -> public key

    @classmethod
    def build(cls, topics: Collection[str], owner_of: Mapping[str, str], keys: Mapping[str, Ed25519PublicKey],
              ) -> TrustPolicy:
        owners: dict[str, str] = {}
        for topic in sorted(topics):
            owner = owner_of.get(topic)
            if owner is None:
                raise ConfigError(f"{topic} must be signed but the catalog names no owner for it: catalogue it")
            if owner not in keys:
                raise ConfigError(f"{topic} must be signed by {owner!r}, which the trust bundle has no key for:"
                                  " add its public key to the bundle")
            owners[topic] = owner
        return cls(owners, keys)

    def check(self, topic: str, env: EventEnvelope) -> Rejection | None:
        owner = self.owners.get(topic)
        if owner is None:
            return None
        if not env.signature:
            return Rejection(Reason.BAD_SIGNATURE,
                             f"{topic} requires envelopes signed by {owner!r}; this one is unsigned")
        if not verify_signature(env, self.keys[owner]):
            return Rejection(Reason.BAD_SIGNATURE,
                             f"signature does not verify with {owner!r}'s key from the trust bundle")
        return None


def signing_settings(app: App, signing_key: str | None, trust_bundle: str | None, catalog: str | None,
                     ) -> tuple[Signer | None, TrustPolicy | None]:
    """The worker's signer and trust policy from its options; owners of signed topics come from
    the catalog. ``ConfigError`` (exit 2) naming the fix when they do not fit together."""
    signer = Signer.from_file(signing_key) if signing_key else None
    if not app.signed_inputs:
        return signer, None
    if not trust_bundle:
        raise ConfigError(f"app {app.name!r} requires signed inputs on {', '.join(sorted(app.signed_inputs))}:"
                          " pass --trust-bundle (or set $PIT_TRUST_BUNDLE) to the owners' public keys")
    from pit_streams.catalog import load_catalog

    owners = {spec.name: spec.owner for spec in load_catalog(catalog).topics}
    return signer, TrustPolicy.build(app.signed_inputs, owners, load_trust_bundle(trust_bundle))
