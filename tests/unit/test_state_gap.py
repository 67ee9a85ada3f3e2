"""A store restored behind its group's committed offsets is reported, never silent (runtime/state_gap.py).

The attack: the changelog loses records under a live group (recreated, truncated, or deleted by
retention). A fresh disk then restores a store without them, and the worker handles on from the
group's committed offset with state and dedupe marks missing. The real-broker version is in
tests/integration/test_longrun.py.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pit_streams.runtime.state_gap import state_gaps
from pit_streams.testing import TestHarness
from pit_streams.transport.base import TopicPartition
from tests.unit.test_state_longrun import CELL_A, FILLS, buy, cash_app, cash_of


async def test_a_changelog_that_lost_records_is_reported_when_the_store_is_restored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = cash_app()
    async with TestHarness(app, data_dir=tmp_path / "a", catalog=False) as h:
        for _ in range(3):
            await h.send(FILLS, buy(), key=CELL_A)
        h.broker.topics[app.changelog_topic] = [[]]  # deleted and created again, empty
        h.data_dir = tmp_path / "b"
        with caplog.at_level(logging.ERROR, logger="pit_streams.worker"):
            await h.restart()
            await h.send(FILLS, buy(), key=CELL_A)
        assert h.metrics.state_gaps == 1
        [report] = [r.getMessage() for r in caplog.records if "the group committed offset" in r.getMessage()]
        assert f"{FILLS}[0]: the group committed offset 3" in report
        assert "reflects only the records below 0" in report and "--to-offset 0" in report
        # What it reports: the cell's state starts over. Handling goes on from the committed offset.
        assert cash_of(h, CELL_A) == [-1_000_000, -2_000_000, -3_000_000, -1_000_000]


async def test_a_partition_move_or_restart_with_the_changelog_whole_reports_nothing(tmp_path: Path) -> None:
    async with TestHarness(cash_app(), data_dir=tmp_path / "a", catalog=False) as h:
        for _ in range(3):
            await h.send(FILLS, buy(), key=CELL_A)
        h.data_dir = tmp_path / "b"  # a move: restored from the changelog alone
        await h.restart()
        await h.send(FILLS, buy(), key=CELL_A)
        await h.restart()  # a restart on the same disk
        await h.send(FILLS, buy(), key=CELL_A)
        h.broker.committed.clear()  # an expired group offset: the store is ahead, which is no gap
        await h.restart()
        await h.send(FILLS, buy(), key=CELL_A)
        assert cash_of(h, CELL_A) == [-1_000_000 * n for n in range(1, 7)]
        assert h.metrics.state_gaps == 0


def test_only_a_store_behind_its_group_is_a_gap() -> None:
    a, b = TopicPartition("t.a", 2), TopicPartition("t.b", 2)
    assert state_gaps({"t.a": 10, "t.b": 5}, {a: 10, b: 4}) == {}  # level, and ahead (skipped as applied)
    assert state_gaps({"t.a": 10}, {a: 11, b: 1}) == {a: 10, b: 0}  # behind, and a topic it never saw
    assert state_gaps({}, {}) == {}  # no committed offsets: a new group, or expired ones
