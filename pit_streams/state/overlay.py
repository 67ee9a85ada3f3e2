"""Pending key states over a partition store: the one place writes are layered over reads.

A poll batch's accepted writes wait here until its checkpoint commits; a handler's own writes
(kept by ``KeyedState`` until the handler returns) are laid over them for its reads. Every
layer is resolved by this module, so "which value does a handler see" has one answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

# A handler's writes to one key: name -> value, None deletes the entry.
Writes = Mapping[str, int | None]
_NONE: Writes = {}


class StateReader(Protocol):
    """What the overlay reads beneath it (``PartitionStore``)."""

    def get_state(self, key: str, name: str) -> int | None: ...
    def key_state(self, key: str) -> dict[str, int]: ...


class StateOverlay:
    """Whole key states written but not yet durable, shadowing ``store``.

    ``pending`` maps a canonical key to its entire state after the writes (never a partial
    update), so a read finds a key either wholly here or wholly in the store.
    """

    __slots__ = ("_store", "pending")

    def __init__(self, store: StateReader, pending: dict[str, dict[str, int]] | None = None) -> None:
        self._store = store
        self.pending: dict[str, dict[str, int]] = {} if pending is None else pending

    def get_state(self, key: str, name: str) -> int | None:
        """As ``get`` with no writes: an overlay is a ``StateReader`` for the next batch's overlay."""
        return self.get(key, name)

    def layer_on(self, store: StateReader) -> None:
        """Read ``store`` beneath from now on (the layer it stood on became durable)."""
        self._store = store

    def get(self, key: str, name: str, writes: Writes = _NONE) -> int | None:
        """Entry ``name`` of ``key``, as it is with ``writes`` laid on top."""
        if name in writes:
            return writes[name]
        state = self.pending.get(key)
        if state is not None:
            return state.get(name)
        return self._store.get_state(key, name)

    def key_state(self, key: str, writes: Writes = _NONE) -> dict[str, int]:
        """The whole state of ``key`` (a copy), as it is with ``writes`` laid on top."""
        pending = self.pending.get(key)
        state = dict(pending) if pending is not None else self._store.key_state(key)
        for name, value in writes.items():
            if value is None:
                state.pop(name, None)
            else:
                state[name] = value
        return state

    def write(self, key: str, writes: Writes) -> None:
        """Accept ``writes`` into ``key``'s pending state."""
        self.pending[key] = self.key_state(key, writes)
