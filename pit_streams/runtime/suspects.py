"""When a suspected programming error has shown it is one: two tenants failing at one code site.

A ``TypeError`` in a handler is usually a bug, but one tenant's data can cause it too
(``{"buy": 1}.get(fill.venue) * qty`` with a venue nobody expected). Stopping the partition on
it would let one tenant halt every tenant of the partition; tenants are walls. So a suspected
error takes the data path (its record is dead-lettered) until records of at least two distinct
tenants fail at the same code site with the same exception type, with no successful handling by
that handler in between: a real bug fails for everyone and stops at the second tenant's record.
"""

from __future__ import annotations

_Site = tuple[str, str]  # (file:line, exception type name)


class Suspicions:
    """Tenants that failed at each code site, per (partition, handler topic), since its last success."""

    __slots__ = ("_failed",)

    def __init__(self) -> None:
        self._failed: dict[tuple[int, str], dict[_Site, set[str]]] = {}

    def failed(self, partition: int, topic: str, site: str, exc_type: str, tenant: str) -> int:
        """Note a failure; returns how many distinct tenants have failed at this site so far."""
        tenants = self._failed.setdefault((partition, topic), {}).setdefault((site, exc_type), set())
        tenants.add(tenant)
        return len(tenants)

    def succeeded(self, partition: int, topic: str) -> None:
        """The handler worked on this partition: earlier failures were the data's after all."""
        if self._failed:
            self._failed.pop((partition, topic), None)
