"""Dead letters reach the log: the first of a reason at once, then one counted line per interval."""

from __future__ import annotations

import logging

import pytest
from test_harness_runtime import FILLS, make_app

from pit_streams.runtime.deadletter_log import DeadLetterLog
from pit_streams.testing import TestHarness


def test_one_line_per_reason_per_interval_with_count_and_first_coordinates(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    dl = DeadLetterLog(interval_s=10, clock=lambda: now[0])
    with caplog.at_level(logging.ERROR, "pit_streams.dead_letters"):
        for offset in range(5):
            dl.note("not_envelope", f"t[0]@{offset}", "the value is not an envelope")
        dl.note("key_invalid", "t[1]@9", "bad key\nFORGED line")
        dl.tick()  # the interval is not over: nothing more yet
        assert len(caplog.records) == 2
        now[0] = 10.5
        dl.tick()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("dead letter [not_envelope] t[0]@0: the value is not an envelope")
    assert lines[1].startswith("dead letter [key_invalid] t[1]@9: bad key\\nFORGED line")
    assert lines[2] == "dead letter [not_envelope]: 4 more in 10 s, the first at t[0]@1: the value is not an envelope"
    assert len(lines) == 3  # key_invalid had no more: no second line


async def test_the_runtime_logs_its_dead_letters(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, "pit_streams.dead_letters"):
        async with TestHarness(make_app(), catalog=False) as h:
            await h.send(FILLS, b"not an envelope")
            await h.send(FILLS, b"nor this")
    lines = [r.getMessage() for r in caplog.records if r.name == "pit_streams.dead_letters"]
    assert len(lines) == 1 and lines[0].startswith(f"dead letter [not_envelope] {FILLS}[0]@0")
