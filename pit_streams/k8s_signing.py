"""What a worker pod needs for signed outputs and signed inputs (docs/adr/0008-verification.md).

The private key comes from a Secret (``{app}-signing-key``, key ``signing.key``), like the TLS
material: never in the image or the repo. The trust bundle (owner -> public key) is public and
comes from a ConfigMap (key ``trust.json``) shared by every app that requires signed inputs.
"""

from __future__ import annotations

from typing import Any

from pit_streams.app import App
from pit_streams.contract.signing import SIGNING_KEY_ENV, TRUST_BUNDLE_ENV

SIGNING_DIR = "/etc/pit/signing"
TRUST_DIR = "/etc/pit/trust"
DEFAULT_TRUST_BUNDLE = "pit-trust-bundle"


def signing_key_secret(app: App) -> str:
    return f"{app.name}-signing-key"


def signing_mounts(app: App, *, sign_outputs: bool, trust_bundle: str = DEFAULT_TRUST_BUNDLE,
                   ) -> tuple[dict[str, str], list[dict[str, Any]], list[dict[str, Any]]]:
    """(env, volumeMounts, volumes) to add to the worker container; empty when not configured."""
    env: dict[str, str] = {}
    mounts: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    if sign_outputs:
        env[SIGNING_KEY_ENV] = f"{SIGNING_DIR}/signing.key"
        mounts.append({"name": "signing-key", "mountPath": SIGNING_DIR, "readOnly": True})
        volumes.append({"name": "signing-key", "secret": {
            "secretName": signing_key_secret(app), "defaultMode": 0o440,
            "items": [{"key": "signing.key", "path": "signing.key"}]}})
    if app.signed_inputs:
        env[TRUST_BUNDLE_ENV] = f"{TRUST_DIR}/trust.json"
        mounts.append({"name": "trust-bundle", "mountPath": TRUST_DIR, "readOnly": True})
        volumes.append({"name": "trust-bundle", "configMap": {
            "name": trust_bundle, "items": [{"key": "trust.json", "path": "trust.json"}]}})
    return env, mounts, volumes
