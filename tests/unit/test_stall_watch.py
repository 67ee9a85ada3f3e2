"""A librdkafka call that overruns its own timeout fails the commit instead of stalling it."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from pit_streams.transport.base import ClientFailed
from pit_streams.transport.stall_watch import ClientStuck, StallWatch


async def test_a_call_past_its_timeout_and_grace_is_a_stuck_client() -> None:
    watch = StallWatch(grace_s=0.2)
    release = threading.Event()
    pool = ThreadPoolExecutor(max_workers=1)

    def hangs() -> str:  # as send_offsets_to_transaction does while the coordinator comes back
        with watch.call("send_offsets_to_transaction", 0.1):
            release.wait(30)
        return "returned"

    started = time.monotonic()
    future = asyncio.get_running_loop().run_in_executor(pool, hangs)
    with pytest.raises(ClientStuck, match="send_offsets_to_transaction has not returned") as caught:
        await watch.result(future)
    assert isinstance(caught.value, ClientFailed) and watch.stuck
    assert time.monotonic() - started < 5
    release.set()
    pool.shutdown(wait=True)


async def test_a_slow_call_within_its_timeout_is_waited_for() -> None:
    watch = StallWatch(grace_s=0.0)
    pool = ThreadPoolExecutor(max_workers=1)

    def slow() -> str:
        with watch.call("commit_transaction", 3.0):
            time.sleep(1.5)  # the work itself: a call that takes 1.5 s of its 3 s
        return "committed"

    assert await watch.result(asyncio.get_running_loop().run_in_executor(pool, slow)) == "committed"
    assert watch.stuck == ""
    pool.shutdown(wait=True)
