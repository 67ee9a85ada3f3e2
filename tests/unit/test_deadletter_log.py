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
    assert lines[0].startswith(f"dead letter [not_envelope] {FILLS}[0]@0")
    assert lines[1:] == [f"dead letter [not_envelope]: 1 more in 10 s, the first at {FILLS}[0]@1: value is not a"
                         " pit.envelope.v1.EventEnvelope: Error parsing message with type"
                         " 'pit.envelope.v1.EventEnvelope': Wire format was corrupt"]  # reported at stop


def test_flush_reports_the_counted_ones_at_once(caplog: pytest.LogCaptureFixture) -> None:
    dl = DeadLetterLog(interval_s=10, clock=lambda: 0.0)
    with caplog.at_level(logging.ERROR, "pit_streams.dead_letters"):
        for offset in range(3):
            dl.note("not_envelope", f"t[0]@{offset}", "nope")
        dl.flush()
        dl.flush()  # nothing is reported twice
    assert [r.getMessage() for r in caplog.records][1:] == ["dead letter [not_envelope]: 2 more in 10 s, the first at"
                                                            " t[0]@1: nope"]


async def test_an_idle_poll_reports_an_interval_that_is_over(caplog: pytest.LogCaptureFixture) -> None:
    async with TestHarness(make_app(), catalog=False) as h:
        now = [0.0]
        h.worker._processor._dead_letter_log = DeadLetterLog(interval_s=10, clock=lambda: now[0])
        with caplog.at_level(logging.ERROR, "pit_streams.dead_letters"):
            await h.send(FILLS, b"junk-1", run=False)
            await h.send(FILLS, b"junk-2")
            now[0] = 11.0
            assert await h.worker.run_once() == 0  # a poll without records
            assert any("1 more in 10 s" in r.getMessage() for r in caplog.records)


async def test_stopping_the_worker_reports_what_was_counted(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, "pit_streams.dead_letters"):
        async with TestHarness(make_app(), catalog=False) as h:
            await h.send(FILLS, b"junk-1", run=False)
            await h.send(FILLS, b"junk-2")
            assert not any("more in" in r.getMessage() for r in caplog.records)
    assert any("1 more in 10 s" in r.getMessage() for r in caplog.records)
