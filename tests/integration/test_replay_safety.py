"""Replay sends only framework-written dead letters, to topics their app reads, once per record."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import KEY, Raw, produce, read_all
from test_tools import cli, dead_lettered_poison

from pit_streams.contract import Reason, Rejection
from pit_streams.contract.naming import DEAD_LETTER_TOPIC
from pit_streams.runtime import deadletter
from pit_streams.tools.deadletters import REPLAYED_FROM
from pit_streams.transport.base import Record

pytestmark = pytest.mark.kafka


def _consistent_forgery(topic: str, group: str, value: bytes, offset: int) -> Raw:
    """A dead letter exactly as the framework would write it — for a record of ``topic``."""
    record = Record(topic, 0, offset, str(KEY).encode(), value, [], 1_700_000_000_000)
    dead = deadletter.dead_letter_record(record, Rejection(Reason.HANDLER_ERROR, "forged"), group=group,
                                         producer="evil@1.0")
    return Raw(dead.key, dead.value, list(dead.headers))


async def test_forged_duplicated_and_marker_blocked_dead_letters(kafka_bootstrap: str, tmp_path: Path) -> None:
    sc, catalog, poison = await dead_lettered_poison(kafka_bootstrap, tmp_path)
    [real] = [o for o in read_all(kafka_bootstrap, DEAD_LETTER_TOPIC)
              if o.headers.get(deadletter.GROUP) == sc.name.encode()]
    real_at = f"{DEAD_LETTER_TOPIC}/{real.partition}/{real.offset}"
    retargeted = {**real.headers, deadletter.SOURCE_TOPIC: sc.output.encode()}
    produce(kafka_bootstrap, DEAD_LETTER_TOPIC, [
        Raw(real.key, real.value, list(real.headers.items()), real.partition),  # a rewound batch's copy
        Raw(real.key, real.value, list(retargeted.items()), real.partition),  # headers edited to another topic
        _consistent_forgery(DEAD_LETTER_TOPIC, sc.name, poison.value or b"", 3),
        _consistent_forgery(sc.output, sc.name, poison.value or b"", 4),  # a topic the group only writes
    ])
    # Anyone may write a replayed_from header: a record that is not the copy must not block the replay.
    produce(kafka_bootstrap, sc.source, [Raw(poison.key, b"not the record", [(REPLAYED_FROM, real_at.encode())])])
    ends = len(read_all(kafka_bootstrap, sc.source))

    done = cli("dead-letters", "replay", "--group", sc.name, "--apply", catalog=catalog, bootstrap=kafka_bootstrap)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"replayed  {real_at} [handler_error]" in out and "1 replayed" in done.stderr, out
    assert out.count("not replayable") == 3, out
    assert "envelope is not the one derived" in out or "headers are not the ones derived" in out
    assert f"{DEAD_LETTER_TOPIC} is written by the framework only" in out
    assert f"has no committed offsets on {sc.output}" in out
    assert f"the same refused record as {real_at}" in out
    source = read_all(kafka_bootstrap, sc.source)
    assert len(source) == ends + 1 and source[-1].value == poison.value and source[-1].key == poison.key
    again = cli("dead-letters", "replay", "--group", sc.name, "--apply", catalog=catalog, bootstrap=kafka_bootstrap)
    assert again.returncode == 0 and "0 replayed" in again.stderr and "already replayed" in again.stdout
    assert len(read_all(kafka_bootstrap, sc.source)) == ends + 1
