"""One partition's durable local state on RocksDB (rocksdict): dedupe marks, keyed integers, offsets.

Layout (raw bytes keys; ``enc(x)`` is ``len(x):x``, so no text can run into its neighbour):
    s/{enc(canonical key)}{name}          -> int, decimal ascii                  handler state
    d/{enc(tenant)}{enc(scope)}{event_id} -> "{expiry_ms} {payload digest} {key}"  dedupe mark
    x/{expiry_ms:015d}/{changelog key}    -> the mark keys it covers, joined by 0x1f  expiry index
    g/{changelog key}                     -> its expiry_ms, decimal ascii        finds a group's x/ entry
    o/{source topic}                      -> next source offset the state reflects
    c                                     -> changelog offset this store reflects
    t                                     -> the partition's event-time clock, ms (ADR 0008)
    v                                     -> the layout's version ("3")

Mark keys never hold 0x1f: the contract refuses control characters in tenant, dedupe_scope and
event_id (``contract/envelope.py``), so the separator cannot occur inside one.

Writes arrive only as whole batches (``apply``), after the transaction carrying their changelog
records committed, so the store never runs ahead of the changelog (docs/adr/0003-state-changelog.md).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from rocksdict import BlockBasedOptions, Cache, Options, Rdict, WriteBatch, WriteBufferManager, WriteOptions

from pit_streams.errors import InvariantError

_CHANGELOG_OFFSET = b"c"
_CLOCK = b"t"
_LAYOUT_KEY, _LAYOUT = b"v", b"3"
_SEP = b"\x1f"


def _enc(text: str) -> str:
    return f"{len(text)}:{text}"


def state_prefix(key: str) -> bytes:
    """Every state entry of exactly canonical ``key`` starts with this, and no other key's does."""
    return f"s/{_enc(key)}".encode()


def mark_key(tenant: str, scope: str, event_id: str) -> bytes:
    """Dedupe is scoped by tenant (and the envelope's ``dedupe_scope``): no tenant can mark another's id."""
    # ``mark_prefix(tenant, scope) + event_id``, spelt out: it runs for every record.
    return f"d/{len(tenant)}:{tenant}{len(scope)}:{scope}{event_id}".encode()


def mark_prefix(tenant: str, scope: str) -> bytes:
    """What every mark key of (tenant, scope) starts with: ``mark_key`` is this plus the event id."""
    return f"d/{_enc(tenant)}{_enc(scope)}".encode()


class Mark(NamedTuple):
    """A processed event: when its mark expires, a digest of its payload and the key it came with."""

    expiry_ms: int
    digest: str
    key: str

    def encode(self) -> bytes:
        return f"{self.expiry_ms} {self.digest} {self.key}".encode()

    @classmethod
    def decode(cls, raw: bytes) -> Mark:
        expiry, digest, key = raw.decode().split(" ", 2)
        return cls(int(expiry), digest, key)


@dataclass(slots=True)
class StoreChanges:
    """Everything one batch (or one restore) changes in a partition store, applied atomically."""

    marks: dict[bytes, Mark] = field(default_factory=dict)  # mark key -> mark
    # A restore's marks, already encoded (``Mark.encode``): a restore folds millions of them, and
    # a Mark per mark would cost more than the rest of the fold. Written after ``marks``.
    restored_marks: dict[bytes, bytes] = field(default_factory=dict)
    mark_groups: dict[str, tuple[int, list[bytes]]] = field(default_factory=dict)  # changelog key -> (expiry, marks)
    forgotten_groups: set[str] = field(default_factory=set)  # changelog keys of mark groups gone (tombstoned)
    key_states: dict[str, dict[str, int]] = field(default_factory=dict)  # canonical key -> its whole state
    offsets: dict[str, int] = field(default_factory=dict)  # source topic -> next offset
    clock_ms: int = 0  # the partition's event-time clock after these changes (0: unchanged)


class ExpiredGroup(NamedTuple):
    changelog_key: str
    expiry_ms: int
    marks: list[bytes]


class PartitionStore:
    """Durable dedupe and state for one partition number of a consumer group."""

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        # Bloom filters: most mark lookups are misses (a new id), and a restore's tombstones read
        # marks at random; without filters each get probes every L0 file (~15 us a mark measured).
        table = BlockBasedOptions()
        table.set_bloom_filter(10, False)
        # One memory budget for every store of the process (a worker holds one per partition):
        # memtables flush at a shared limit instead of 64 MiB each (issue 12: RSS < 150 MB).
        cache, memtables = _shared_memory()
        table.set_block_cache(cache)
        options.set_block_based_table_factory(table)
        options.set_write_buffer_size(_MEMTABLE_BYTES)
        options.set_write_buffer_manager(memtables)
        self._db: Any = Rdict(str(path), options)  # raw mode: bytes keys and values only
        writes = WriteOptions()
        writes.memtable_insert_hint_per_batch = True
        self._db.set_write_options(writes)
        self.path = path
        if self._db.get(_LAYOUT_KEY) != _LAYOUT:
            # Another layout (an older release): the store is only a cache of the changelog.
            batch = WriteBatch(raw_mode=True)
            for k, _ in self._db.items():
                batch.delete(k)
            batch.put(_LAYOUT_KEY, _LAYOUT)
            self._db.write(batch)

    @property
    def changelog_offset(self) -> int:
        """The last changelog offset reflected here, -1 if none."""
        raw = self._db.get(_CHANGELOG_OFFSET)
        return int(raw) if raw is not None else -1

    @property
    def clock_ms(self) -> int:
        """The partition's event-time clock: what dedupe expiry is measured against (ADR 0008)."""
        raw = self._db.get(_CLOCK)
        return int(raw) if raw is not None else 0

    def source_offsets(self) -> dict[str, int]:
        """Next offset per source topic that the state reflects (what a lost group offset resumes from)."""
        return {k[2:].decode(): int(v) for k, v in self._prefixed(b"o/")}

    def marks(self, keys: Sequence[bytes]) -> list[Mark | None]:
        """The mark of each key, if any (one multi-get); expiry is the caller's to judge."""
        if not keys:
            return []
        return [None if v is None else Mark.decode(v) for v in self._db.get(list(keys))]

    def get_state(self, key: str, name: str) -> int | None:
        raw = self._db.get(state_prefix(key) + name.encode())
        return int(raw) if raw is not None else None

    def key_state(self, key: str) -> dict[str, int]:
        prefix = state_prefix(key)
        cut = len(prefix)
        return {k[cut:].decode(): int(v) for k, v in self._prefixed(prefix)}

    def expired_groups(self, now_ms: int, limit: int) -> list[ExpiredGroup]:
        """Up to ``limit`` changelog mark groups whose marks have expired."""
        out: list[ExpiredGroup] = []
        for k, v in self._db.items(from_key=b"x/"):
            if not k.startswith(b"x/") or len(out) >= limit:
                break
            expiry = int(k[2:17])
            if expiry > now_ms:
                break
            out.append(ExpiredGroup(k[18:].decode(), expiry, v.split(_SEP) if v else []))
        return out

    def _groups(self, changelog_keys: Iterable[str]) -> list[ExpiredGroup]:
        """The stored mark groups of these changelog keys (point lookups; unknown keys are skipped)."""
        names = list(changelog_keys)
        expiries = self._db.get([b"g/" + name.encode() for name in names])
        found = [(name, int(e)) for name, e in zip(names, expiries, strict=True) if e is not None]
        covered = self._db.get([_index_key(e, name) for name, e in found]) if found else []
        return [ExpiredGroup(name, e, v.split(_SEP) if v else [])
                for (name, e), v in zip(found, covered, strict=True) if v is not None]

    def _prefixed(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        for k, v in self._db.items(from_key=prefix):
            if not k.startswith(prefix):
                return
            yield k, v

    def apply(self, changes: StoreChanges, changelog_offset: int | None, expired: Iterable[ExpiredGroup] = ()) -> None:
        batch = WriteBatch(raw_mode=True)
        expired = list(expired)
        if changes.forgotten_groups:  # tombstoned in the changelog (a restore chunk after their group's)
            expired.extend(self._groups(changes.forgotten_groups))
        until: dict[bytes, int] = {}  # mark key -> the latest expiry of a group forgetting it here
        for group in expired:
            batch.delete(_index_key(group.expiry_ms, group.changelog_key))
            batch.delete(b"g/" + group.changelog_key.encode())
            for mk in group.marks:
                if until.get(mk, -1) < group.expiry_ms:
                    until[mk] = group.expiry_ms
        # A mark re-made after its expiry (same id processed again) belongs to a newer group; one
        # multi-get in key order reads neighbouring marks from the same blocks.
        candidates = sorted(mk for mk in until if mk not in changes.marks and mk not in changes.restored_marks)
        for mk, current in zip(candidates, self._db.get(candidates) if candidates else [], strict=True):
            if current is not None and int(current[:current.index(b" ")]) <= until[mk]:
                batch.delete(mk)
        for mk, mark in changes.marks.items():
            batch.put(mk, mark.encode())
        restored = changes.restored_marks
        # In key order: RocksDB's memtable (a skiplist) then inserts each next to the last
        # (memtable_insert_hint_per_batch) instead of by a cache-missing search; measured 2.5 ->
        # 0.3 us a mark, for 0.6 us of sorting (bench/restore_cost.py).
        # The puts run in map (C), not a Python loop: a restore chunk holds ~10^6 marks.
        ordered = sorted(restored)
        deque(map(batch.put, ordered, map(restored.__getitem__, ordered)), maxlen=0)
        for clkey, (expiry, mks) in changes.mark_groups.items():
            covered = _SEP.join(mks)
            if mks and covered.count(_SEP) != len(mks) - 1:
                raise InvariantError(f"a mark key of {clkey} holds 0x1f, which the contract refuses in every part")
            batch.put(_index_key(expiry, clkey), covered)
            batch.put(b"g/" + clkey.encode(), str(expiry).encode())
        for key, entries in changes.key_states.items():
            prefix = state_prefix(key)
            for old, _ in self._prefixed(prefix):
                if old[len(prefix):].decode() not in entries:
                    batch.delete(old)
            for name, value in entries.items():
                batch.put(prefix + name.encode(), str(value).encode())
        for topic, offset in changes.offsets.items():
            batch.put(b"o/" + topic.encode(), str(offset).encode())
        if changes.clock_ms > self.clock_ms:
            batch.put(_CLOCK, str(changes.clock_ms).encode())
        if changelog_offset is not None and changelog_offset > self.changelog_offset:
            batch.put(_CHANGELOG_OFFSET, str(changelog_offset).encode())
        self._db.write(batch)

    def close(self) -> None:
        self._db.close()


_MEMTABLE_BYTES = 16 * 2**20  # per store: a restore chunk's marks fit, a flush stays short
_MEMTABLES_TOTAL_BYTES = 48 * 2**20
_BLOCK_CACHE_BYTES = 32 * 2**20
_MEMORY: tuple[Cache, WriteBufferManager] | None = None


def _shared_memory() -> tuple[Cache, WriteBufferManager]:
    global _MEMORY
    if _MEMORY is None:
        _MEMORY = (Cache(_BLOCK_CACHE_BYTES), WriteBufferManager(_MEMTABLES_TOTAL_BYTES, False))
    return _MEMORY


def _index_key(expiry_ms: int, changelog_key: str) -> bytes:
    return f"x/{expiry_ms:015d}/{changelog_key}".encode()


def open_store(data_dir: Path, group: str, partition: int) -> PartitionStore:
    return PartitionStore(data_dir / group / f"p{partition}")
