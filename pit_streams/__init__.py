"""pit-streams: declarative, contract-checked stream processing for the PIT platform.

The public API is what this module exports; everything else is internal.

Importing the package (and declaring an ``App``) loads no YAML, RocksDB or Kafka client
(tests/unit/test_light_face.py holds it to that): modules that need one import it inside the
function that uses it, so the bench's raw loops, ``pit_streams.contract`` users and handler
modules pay only for what they touch.
"""

from pit_streams.acl import ProducerSpec
from pit_streams.app import App
from pit_streams.context import Context, KeyedState
from pit_streams.contract import Key, Reason, Rejection
from pit_streams.contract.naming import DEAD_LETTER_TOPIC
from pit_streams.errors import ConfigError, DeclarationError, EmitError, PitStreamsError
from pit_streams.producer import Producer
from pit_streams.transport.base import DeliveryError, TransportError

__all__ = [
    "DEAD_LETTER_TOPIC",
    "App",
    "ConfigError",
    "Context",
    "DeclarationError",
    "DeliveryError",
    "EmitError",
    "Key",
    "KeyedState",
    "PitStreamsError",
    "Producer",
    "ProducerSpec",
    "Reason",
    "Rejection",
    "TransportError",
]

__version__ = "0.1.0"

