"""Mutual TLS settings in the shape Strimzi mounts them: ``ca.crt``, ``user.crt``, ``user.key``.

No certificate or key ever lives in this repo or an image: the directory is mounted at
deploy time (a ``KafkaUser`` secret plus the cluster CA) and named by ``PIT_KAFKA_TLS_DIR``.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from pit_streams.errors import ConfigError

TLS_DIR_ENV = "PIT_KAFKA_TLS_DIR"
_FILES = ("ca.crt", "user.crt", "user.key")


class TlsConfigError(ConfigError, ValueError):
    """The TLS directory is missing a file; the message names the fix."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path

    @classmethod
    def from_dir(cls, directory: str | Path) -> TlsFiles:
        """Read the three files Strimzi mounts; fail with a message naming what is missing."""
        root = Path(directory)
        missing = [name for name in _FILES if not (root / name).is_file()]
        if missing:
            raise TlsConfigError(
                f"TLS directory {root} lacks {', '.join(missing)}: mount the KafkaUser secret"
                f" and the cluster CA there, or unset {TLS_DIR_ENV}"
            )
        return cls(root / "ca.crt", root / "user.crt", root / "user.key")

    @classmethod
    def from_env(cls) -> TlsFiles | None:
        directory = os.environ.get(TLS_DIR_ENV)
        return cls.from_dir(directory) if directory else None

    def librdkafka(self) -> dict[str, str]:
        """Settings for confluent-kafka (librdkafka)."""
        return {
            "security.protocol": "SSL",
            "ssl.ca.location": str(self.ca),
            "ssl.certificate.location": str(self.cert),
            "ssl.key.location": str(self.key),
        }

    def ssl_context(self) -> ssl.SSLContext:
        """An SSL context for aiokafka: verifies the broker (and its host name) against ``ca.crt``
        and presents ``user.crt``/``user.key`` (what aiokafka's ``create_ssl_context`` builds)."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca))
        context.load_cert_chain(certfile=str(self.cert), keyfile=str(self.key))
        return context
