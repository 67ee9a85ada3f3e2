"""Replay verification, range hashes and attestation (issue 13, docs/adr/0008-verification.md).

Nothing here is imported by ``import pit_streams``: the runtime does not depend on it.
"""
