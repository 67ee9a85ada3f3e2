"""One partition's durable local state on RocksDB (rocksdict): dedupe ids and keyed integers.

Layout (raw bytes keys):
    d/{event_id}                         -> expiry (ms since epoch)        dedupe
    x/{expiry_ms:015d}/{changelog key}   -> the ids it covers, "\\n"-joined  expiry index
    s/{canonical key}/{name}             -> int, decimal ascii             handler state
    o                                    -> changelog offset this store reflects

Writes arrive only as whole batches (``apply``), after the broker acknowledged the
changelog records that carry them, so the store never runs ahead of its changelog.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rocksdict import Options, Rdict, WriteBatch

_OFFSET_KEY = b"o"


def dedupe_key(event_id: str) -> bytes:
    return b"d/" + event_id.encode()


@dataclass(slots=True)
class StoreChanges:
    """Everything one batch changes in a partition store, applied atomically."""

    seen: dict[str, int] = field(default_factory=dict)  # event_id -> expiry ms
    expiry_index: dict[str, tuple[int, list[str]]] = field(default_factory=dict)  # changelog key -> (expiry, ids)
    state: dict[str, int | None] = field(default_factory=dict)  # state key -> value (None deletes)
    forgotten: list[tuple[str, int, list[str]]] = field(default_factory=list)  # expired (key, expiry, ids)


class PartitionStore:
    """Durable dedupe and state for one partition number of a consumer group."""

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        self._db: Any = Rdict(str(path), options)  # raw mode: bytes keys and values only
        self.path = path

    @property
    def changelog_offset(self) -> int:
        """The last changelog offset reflected here, -1 if none."""
        raw = self._db.get(_OFFSET_KEY)
        return int(raw) if raw is not None else -1

    def seen(self, event_ids: Sequence[str], now_ms: int) -> list[bool]:
        """For each id, whether it was processed and has not expired (one multi-get)."""
        if not event_ids:
            return []
        values = self._db.get([dedupe_key(e) for e in event_ids])
        return [v is not None and int(v) > now_ms for v in values]

    def get_state(self, key: str) -> int | None:
        raw = self._db.get(key.encode())
        return int(raw) if raw is not None else None

    def state_items(self, prefix: str) -> Iterator[tuple[str, int]]:
        """State entries whose key starts with ``prefix``, in key order."""
        start = prefix.encode()
        for k, v in self._db.items(from_key=start):
            if not k.startswith(start):
                return
            yield k.decode(), int(v)

    def expired(self, now_ms: int, limit: int) -> list[tuple[str, int, list[str]]]:
        """Up to ``limit`` changelog dedupe records whose ids have expired: (key, expiry, ids)."""
        out: list[tuple[str, int, list[str]]] = []
        for k, v in self._db.items(from_key=b"x/"):
            if not k.startswith(b"x/") or len(out) >= limit:
                break
            expiry = int(k[2:17])
            if expiry > now_ms:
                break
            out.append((k[18:].decode(), expiry, v.decode().split("\n") if v else []))
        return out

    def apply(self, changes: StoreChanges, changelog_offset: int | None) -> None:
        batch = WriteBatch(raw_mode=True)
        for event_id, expiry in changes.seen.items():
            batch.put(dedupe_key(event_id), str(expiry).encode())
        for clkey, (expiry, ids) in changes.expiry_index.items():
            batch.put(_index_key(expiry, clkey), "\n".join(ids).encode())
        for key, value in changes.state.items():
            if value is None:
                batch.delete(key.encode())
            else:
                batch.put(key.encode(), str(value).encode())
        for clkey, expiry, ids in changes.forgotten:
            batch.delete(_index_key(expiry, clkey))
            for event_id in ids:
                batch.delete(dedupe_key(event_id))
        if changelog_offset is not None and changelog_offset > self.changelog_offset:
            batch.put(_OFFSET_KEY, str(changelog_offset).encode())
        self._db.write(batch)

    def close(self) -> None:
        self._db.close()


def _index_key(expiry_ms: int, changelog_key: str) -> bytes:
    return f"x/{expiry_ms:015d}/{changelog_key}".encode()


def open_store(data_dir: Path, group: str, partition: int) -> PartitionStore:
    return PartitionStore(data_dir / group / f"p{partition}")


