"""The platform contract as pure functions: keys, envelope unwrap/validate, wrap."""

from pit_streams.contract.envelope import (
    Accepted,
    derive_event_id,
    output_event_id,
    payload_type_of,
    sha256_hex,
    unwrap,
    validate,
    wrap,
)
from pit_streams.contract.keys import Key, key_of, parse_key
from pit_streams.contract.partition import murmur2_partition
from pit_streams.contract.reasons import Reason, Rejection

__all__ = [
    "Accepted",
    "Key",
    "Reason",
    "Rejection",
    "derive_event_id",
    "key_of",
    "murmur2_partition",
    "output_event_id",
    "parse_key",
    "payload_type_of",
    "sha256_hex",
    "unwrap",
    "validate",
    "wrap",
]
