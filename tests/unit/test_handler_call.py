"""``call_with_timeout``: a handler that never suspends runs without a timer; one that does is
cut off at its deadline, counted from the call, and errors and cancellation pass through."""

from __future__ import annotations

import asyncio
import time

import pytest

from pit_streams.runtime.handler_call import call_with_timeout


async def test_a_handler_that_never_suspends_needs_no_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_timer(*_: object) -> None:
        raise AssertionError("a timer was armed")

    monkeypatch.setattr(asyncio, "timeout_at", no_timer)
    ran: list[int] = []

    async def handler() -> None:
        ran.append(1)

    await call_with_timeout(handler(), 1.0)
    assert ran == [1]


async def test_a_suspending_handler_runs_to_its_end() -> None:
    steps: list[str] = []

    async def handler() -> None:
        steps.append("before")
        await asyncio.sleep(0)
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(fut.set_result, "value")
        steps.append(await fut)

    await call_with_timeout(handler(), 5.0)
    assert steps == ["before", "value"]


async def test_a_hanging_handler_times_out_counting_from_the_call() -> None:
    finished: list[str] = []

    async def handler() -> None:
        time.sleep(0.2)  # noqa: ASYNC251 - the synchronous part before the first wait counts too
        try:
            await asyncio.Event().wait()
        finally:
            finished.append("cleanup")

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await call_with_timeout(handler(), 0.3)
    assert time.monotonic() - started < 1.0 and finished == ["cleanup"]


async def test_errors_before_and_after_the_first_wait_reach_the_caller() -> None:
    async def early() -> None:
        raise ValueError("early")

    async def late() -> None:
        await asyncio.sleep(0)
        raise KeyError("late")

    with pytest.raises(ValueError, match="early"):
        await call_with_timeout(early(), 1.0)
    with pytest.raises(KeyError, match="late"):
        await call_with_timeout(late(), 1.0)


async def test_cancelling_the_caller_cancels_the_handler() -> None:
    cleaned: list[bool] = []
    waiting = asyncio.Event()

    async def handler() -> None:
        try:
            waiting.set()
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cleaned.append(True)
            raise

    task = asyncio.ensure_future(call_with_timeout(handler(), 30.0))
    await waiting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == [True]
