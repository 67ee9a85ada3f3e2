"""Standby stores: warm copies of the partition stores other members own (docs/adr/0012-standby-stores.md).

With ``WorkerSettings.standby`` on, a worker keeps a store for every partition number it does not
own, and follows those changelog partitions (``Transport.read_followed``: a reader of its own that
only assigns, never joins, never commits) a chunk per turn of the loop, each chunk folded and
applied exactly as a restore's (``restore.apply_chunk``), with the changelog offset it reaches.
A standby store is therefore what a same-disk store would be after a restart that stopped
somewhere in the changelog: when its partition is assigned here, the ordinary restore reads on
from that offset, so only the tail is read. A store revoked from this worker stays open as a
standby instead of being closed.

Off, nothing here runs: a revoked store is closed and an assigned one opened, as before.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from pathlib import Path

from pit_streams.app import App
from pit_streams.runtime.metrics import Metrics
from pit_streams.runtime.restore import apply_chunk
from pit_streams.state.store import PartitionStore, open_store
from pit_streams.transport.base import Record, TopicPartition, Transport, TransportError

log = logging.getLogger("pit_streams.worker")


class Standby:
    """The standby stores of one worker, and the stores it hands to (or takes from) its owner side."""

    def __init__(self, app: App, transport: Transport, data_dir: Path, ttl_ms: int, metrics: Metrics, *,
                 enabled: bool, chunk_records: int) -> None:
        self._app = app
        self._transport = transport
        self._data_dir = data_dir
        self._ttl_ms = ttl_ms
        self._metrics = metrics
        self._enabled = enabled
        self._chunk = chunk_records
        self._partitions: int | None = None  # of the app's inputs, asked once
        self._failing = False
        self.stores: dict[int, PartitionStore] = {}
        #: The last step read a full chunk: more is waiting (the loop polls without waiting meanwhile).
        self.behind = False

    def store_for(self, partition: int) -> PartitionStore:
        """The store of a partition this worker now owns: the standby's, warm, if it kept one
        (the restore then reads only the tail), else the one on disk."""
        store = self.stores.pop(partition, None)
        return store if store is not None else open_store(self._data_dir, self._app.group, partition)

    def keep(self, partition: int, store: PartitionStore | None) -> None:
        """A store this worker no longer owns: kept warm as a standby, or closed when standby is off."""
        if store is None:
            return
        if self._enabled and partition not in self.stores:
            self.stores[partition] = store
        else:
            store.close()

    async def step(self, owned: Collection[int]) -> None:
        """Apply the next chunk the follower has fetched for the partitions not ``owned``.

        Bounded (one chunk) and never waiting for the broker: the loop calls it each turn, after
        owned restores and records. A failing read is logged and tried again next turn: a
        standby only ever saves time, it never stops the partitions this worker owns."""
        if not self._enabled:
            return
        try:
            await self._step(set(owned))
        except TransportError as exc:
            self.behind = False
            self._metrics.standby_lag_records = None
            if not self._failing:
                log.warning("standby stores not followed (retried each turn): %s", exc)
            self._failing = True
            return
        if self._failing:
            log.info("standby stores followed again")
            self._failing = False

    async def _step(self, owned: set[int]) -> None:
        if self._partitions is None:
            self._partitions = await self._transport.partitions_for(self._app.reads()[0])
        for partition in sorted(set(range(self._partitions)) - owned - self.stores.keys()):
            self.stores[partition] = open_store(self._data_dir, self._app.group, partition)
        topic = self._app.changelog_topic
        starts = {TopicPartition(topic, p): store.changelog_offset + 1
                  for p, store in self.stores.items() if p not in owned}
        followed = await self._transport.read_followed(starts, self._chunk)
        by_partition: dict[int, list[Record]] = {}
        for record in followed.records:
            if TopicPartition(record.topic, record.partition) in starts:
                by_partition.setdefault(record.partition, []).append(record)
        for partition, records in by_partition.items():
            apply_chunk(self.stores[partition], records, self._ttl_ms, TopicPartition(topic, partition))
        self.behind = len(followed.records) >= self._chunk
        m = self._metrics
        m.standby_records += len(followed.records)
        m.standby_partitions = len(starts)
        known = [followed.lag[tp] for tp in starts if tp in followed.lag]
        m.standby_lag_records = sum(known) if len(known) == len(starts) else None

    def close(self) -> None:
        for store in self.stores.values():
            store.close()
        self.stores.clear()
