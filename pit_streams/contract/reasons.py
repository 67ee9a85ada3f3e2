"""Why a record was rejected: a value, never an exception travelling through the loop."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    """Machine-readable rejection reasons, written to the dead-letter header ``pit.reason``."""

    NOT_ENVELOPE = "not_envelope"
    MISSING_FIELD = "missing_field"
    KEY_INVALID = "key_invalid"
    KEY_MISMATCH = "key_mismatch"
    RECORD_KEY_MISMATCH = "record_key_mismatch"
    PAYLOAD_TYPE_MISMATCH = "payload_type_mismatch"
    PAYLOAD_HASH_MISMATCH = "payload_hash_mismatch"
    PAYLOAD_DECODE_ERROR = "payload_decode_error"
    TENANT_NOT_ALLOWED = "tenant_not_allowed"
    HANDLER_ERROR = "handler_error"
    EVENT_ID_CONFLICT = "event_id_conflict"
    OUTPUT_TOO_LARGE = "output_too_large"
    STATE_TOO_LARGE = "state_too_large"
    UNDELIVERABLE = "undeliverable"
    PAYLOAD_FIELD_MISMATCH = "payload_field_mismatch"
    TOPIC_MISMATCH = "topic_mismatch"
    BAD_CHARACTERS = "bad_characters"
    FIELD_TOO_LONG = "field_too_long"
    BAD_PRODUCER = "bad_producer"
    WRONG_PARTITION = "wrong_partition"
    BAD_TIMESTAMP = "bad_timestamp"
    BAD_SIGNATURE = "bad_signature"
    BAD_HEADER_NAME = "bad_header_name"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record the contract refuses, with a reason for machines and a detail for people."""

    reason: Reason
    detail: str
