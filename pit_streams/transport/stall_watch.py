"""A librdkafka call that outlives its own timeout is a stuck client, not a slow one.

``send_offsets_to_transaction`` can block far past the timeout it is given while the group
coordinator comes back after a broker restart (librdkafka issues #5456 and #5511: the
coordinator request's timeout is never checked). The worker would then sit on one batch with
``/healthz`` green until some other broker changes state — in the chaos broker-restart run, five
minutes. The transport's thread cannot be interrupted, so the watch gives up on it instead: past
the call's own timeout plus a grace, the commit fails with ``ClientStuck`` (a ``ClientFailed``) (nothing of the open
transaction is visible; a restart with the same ``transactional.id`` aborts it) and the process
exits for its supervisor to restart it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pit_streams.transport.base import ClientFailed

GRACE_S = 15.0


class ClientStuck(ClientFailed):
    """A librdkafka call overran its own timeout; its thread may never return."""


class StallWatch:
    """Deadlines of the blocking call in flight on the transport's one librdkafka thread."""

    def __init__(self, grace_s: float = GRACE_S) -> None:
        self._grace_s = grace_s
        self._current: tuple[str, float, float] | None = None
        self.stuck = ""  # set once a call overran: the thread may never come back

    @contextmanager
    def call(self, name: str, timeout_s: float) -> Iterator[None]:
        """Around one librdkafka call given ``timeout_s`` (runs on the librdkafka thread)."""
        self._current = (name, timeout_s, time.monotonic() + timeout_s + self._grace_s)
        try:
            yield
        finally:
            self._current = None

    async def result(self, future: asyncio.Future[Any]) -> Any:
        """``await future``, unless the call in flight overruns its deadline: then ``ClientFailed``."""
        while True:
            done, _ = await asyncio.wait({future}, timeout=1.0)
            if done:
                return future.result()
            current = self._current
            if current is not None and time.monotonic() > current[2]:
                name, timeout_s, _ = current
                self.stuck = (f"{name} has not returned {timeout_s + self._grace_s:.0f} s after it was given"
                              f" {timeout_s:.0f} s (a stuck librdkafka client): restarting settles the transaction")
                raise ClientStuck(self.stuck)
