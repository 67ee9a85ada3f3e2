"""Every integration test runs once per transport, against the session's real Kafka broker."""

from __future__ import annotations

import pytest

from pit_streams.transport.factory import TRANSPORTS


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    """The transport under test: ``confluent`` or ``aiokafka``."""
    return str(request.param)
