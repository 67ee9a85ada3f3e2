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
from pit_streams.runtime.worker import Worker, WorkerSettings
from pit_streams.testing import TestHarness
from pit_streams.transport.base import Record, TopicPartition
from pit_streams.transport.memory import MemoryTransport
from tests.unit.test_state_longrun import CELL_A, FILLS, buy, cash_app, cash_of


async def _moved_and_reported(h: TestHarness, disk: Path, caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    """Move the partition to a fresh ``disk``, handle one more fill; the one gap reported on the way."""
    h.data_dir = disk
    with caplog.at_level(logging.WARNING, logger="pit_streams.worker"):
        await h.restart()
        await h.send(FILLS, buy(), key=CELL_A)
    assert h.metrics.state_gaps == 1
    [report] = [r for r in caplog.records if "the group committed offset" in r.getMessage()]
    return report


async def test_a_truncated_changelog_is_reported_with_the_offset_to_go_back_to(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = cash_app()
    async with TestHarness(app, data_dir=tmp_path / "a", catalog=False) as h:
        await h.send(FILLS, buy(), key=CELL_A)
        first_checkpoint = len(h.broker.records(app.changelog_topic))
        for _ in range(2):
            await h.send(FILLS, buy(), key=CELL_A)
        log = h.broker.topics[app.changelog_topic][0]
        del log[first_checkpoint:]  # the changelog lost the last two checkpoints
        report = await _moved_and_reported(h, tmp_path / "b", caplog)
        assert report.levelno == logging.ERROR
        assert f"{FILLS}[0]: the group committed offset 3" in report.getMessage()
        assert "reflects only the records below 1" in report.getMessage()
        assert "--to-offset 1" in report.getMessage()
        # What it reports: the state of the first fill only. Handling goes on from the committed offset.
        assert cash_of(h, CELL_A) == [-1_000_000, -2_000_000, -3_000_000, -2_000_000]


async def test_a_changelog_recreated_empty_is_reported_without_an_offset_to_go_back_to(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = cash_app()
    async with TestHarness(app, data_dir=tmp_path / "a", catalog=False) as h:
        for _ in range(3):
            await h.send(FILLS, buy(), key=CELL_A)
        h.broker.topics[app.changelog_topic] = [[]]  # deleted and created again (or cut by retention)
        report = await _moved_and_reported(h, tmp_path / "b", caplog)
        assert f"{FILLS}[0]: the group committed offset 3" in report.getMessage()
        assert "holds nothing of" in report.getMessage() and "--to-offset" not in report.getMessage()
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


class _NewOwnerCommitsDuringTheRestore(MemoryTransport):
    """While this worker restores, the partition's next owner commits further (this one has not
    yet learnt that it lost the partition): its offsets may be past the changelog end it read to."""

    async def read_partition(self, tp: TopicPartition, start_offset: int, max_records: int | None = None
                             ) -> list[Record]:
        assert self._sub is not None
        for key in [k for k in self.broker.committed if k[0] == self._sub.group]:
            self.broker.committed[key] += 5
        return await super().read_partition(tp, start_offset, max_records)


async def test_offsets_committed_while_the_store_restores_are_not_taken_for_a_gap(tmp_path: Path) -> None:
    app = cash_app()
    async with TestHarness(app, data_dir=tmp_path / "a", catalog=False) as h:
        for _ in range(3):
            await h.send(FILLS, buy(), key=CELL_A)
        await h.worker.stop()
        h.worker = Worker(app, _NewOwnerCommitsDuringTheRestore(h.broker), WorkerSettings(tmp_path / "b"), h.metrics)
        await h.worker.start()
        await h.worker.run(idle_exit_s=0)
        assert h.metrics.restored_records > 0  # the store was restored, and compared
        assert h.metrics.state_gaps == 0


def test_only_a_store_behind_its_group_is_a_gap() -> None:
    a, b = TopicPartition("t.a", 2), TopicPartition("t.b", 2)
    assert state_gaps({"t.a": 10, "t.b": 5}, {a: 10, b: 4}) == {}  # level, and ahead (skipped as applied)
    assert state_gaps({"t.a": 10}, {a: 11, b: 1}) == {a: 10, b: None}  # behind, and a topic it holds nothing of
    assert state_gaps({}, {}) == {}  # no committed offsets: a new group, or expired ones
