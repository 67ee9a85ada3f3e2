"""A header sent without a value enters the runtime as b"" (both Kafka clients return None)."""

from __future__ import annotations

from pathlib import Path

import pytest
from itapp import make_app
from support import KEY, Raw, Scenario, handled, new_worker, produce, read_all, run_until

from pit_streams.contract.naming import DEAD_LETTER_TOPIC
from pit_streams.runtime import deadletter
from pit_streams.transport.factory import TRANSPORTS

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_null_header_value_is_dead_lettered_as_empty_bytes(kind: str, kafka_bootstrap: str,
                                                                    tmp_path: Path) -> None:
    sc = Scenario(kafka_bootstrap)
    sc.create()
    produce(kafka_bootstrap, sc.source, [Raw(str(KEY).encode(), b"not an envelope", [("trace", None)])])  # type: ignore[list-item]
    worker = new_worker(kind, kafka_bootstrap, make_app(sc.name, sc.source, sc.output), tmp_path / "d")
    await worker.start()
    try:
        await run_until([worker], lambda: handled(worker) == 1, what="the record dead-lettered")
    finally:
        await worker.stop()
    [dead] = [o for o in read_all(kafka_bootstrap, DEAD_LETTER_TOPIC)
              if o.headers.get(deadletter.GROUP) == sc.name.encode()]
    assert dead.headers.get(deadletter.SOURCE_HEADER_PREFIX + "trace") == b""
