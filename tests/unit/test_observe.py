"""/healthz, /readyz and /metrics over a real loopback socket."""

from __future__ import annotations

import asyncio

from pit_streams.observe import HealthServer
from pit_streams.runtime.metrics import Metrics


async def get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


async def test_health_ready_and_metrics() -> None:
    metrics = Metrics()
    server = HealthServer(metrics, "nav-consumer", 0, host="127.0.0.1")
    await server.start()
    try:
        assert (await get(server.port, "/healthz"))[0] == 200
        assert (await get(server.port, "/readyz"))[0] == 503  # not in the group yet
        metrics.ready = True
        metrics.processed, metrics.deduped = 7, 2
        metrics.rejected["key_invalid"] += 3
        assert (await get(server.port, "/readyz"))[0] == 200
        status, body = await get(server.port, "/metrics")
        assert status == 200
        assert 'pit_records_processed_total{group="nav-consumer"} 7.0' in body
        assert 'pit_records_deduped_total{group="nav-consumer"} 2.0' in body
        assert 'pit_records_rejected_total{group="nav-consumer",reason="key_invalid"} 3.0' in body
        metrics.mark_unhealthy("broker did not acknowledge outputs")
        status, body = await get(server.port, "/healthz")
        assert status == 503 and "acknowledge" in body
        assert (await get(server.port, "/readyz"))[0] == 503
        assert (await get(server.port, "/nope"))[0] == 404
    finally:
        await server.stop()


async def test_status_line_has_a_reason_phrase() -> None:
    server = HealthServer(Metrics(), "g", 0, host="127.0.0.1")
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /healthz HTTP/1.1\r\n\r\n")
        raw = await reader.read()
        writer.close()
        assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    finally:
        await server.stop()


async def answer(reader: asyncio.StreamReader) -> bytes:
    """What the server sent before closing (a reset, when it closed with our bytes unread, is nothing)."""
    try:
        return await asyncio.wait_for(reader.read(), 10)
    except ConnectionResetError:
        return b""


async def test_slow_and_oversized_requests_are_closed_without_an_answer() -> None:
    server = HealthServer(Metrics(), "g", 0, host="127.0.0.1", read_timeout_s=0.2)
    await server.start()
    try:
        slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", server.port)
        slow_writer.write(b"GET /hea")  # and never the rest: the server closes after its timeout
        assert await answer(slow_reader) == b""
        slow_writer.close()

        big_reader, big_writer = await asyncio.open_connection("127.0.0.1", server.port)
        big_writer.write(b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n")
        assert await answer(big_reader) == b""
        big_writer.close()

        assert (await get(server.port, "/healthz"))[0] == 200  # still serving
    finally:
        await server.stop()


async def test_status_line_latency_histogram_and_end_to_end_lag_through_the_harness() -> None:
    from pit.events.v1.events_pb2 import TradeFillEvent
    from test_harness_runtime import FILLS, make_app

    from pit_streams.testing import TestHarness

    async with TestHarness(make_app(), catalog=False) as h:
        await h.send(FILLS, TradeFillEvent(qty=1, price_micros=5))
        await h.send(FILLS, TradeFillEvent(qty=1, price_micros=5))
        server = HealthServer(h.metrics, "nav-test", 0, host="127.0.0.1")
        await server.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /metrics HTTP/1.1\r\n\r\n")
            raw = (await reader.read()).decode()
            writer.close()
        finally:
            await server.stop()
    assert raw.startswith("HTTP/1.1 200 OK\r\n")
    assert 'pit_handler_latency_seconds_count{group="nav-test"} 2.0' in raw
    assert 'pit_handler_latency_seconds_bucket{group="nav-test",le="+Inf"} 2.0' in raw
    # Both inputs were stamped just now and committed at once: well inside the first buckets.
    assert 'pit_end_to_end_lag_seconds_count{group="nav-test"} 2.0' in raw
    assert 'pit_end_to_end_lag_seconds_bucket{group="nav-test",le="5.0"} 2.0' in raw
    # One observation per committed checkpoint: the duration, and the loop's wait for it.
    commits = h.metrics.commits
    assert commits >= 1
    assert f'pit_commits_total{{group="nav-test"}} {commits:.1f}' in raw
    assert f'pit_checkpoint_seconds_count{{group="nav-test"}} {commits:.1f}' in raw
    assert f'pit_checkpoint_wait_seconds_count{{group="nav-test"}} {commits:.1f}' in raw
    assert h.metrics.checkpoint_wait.total <= h.metrics.checkpoint_duration.total


def test_end_to_end_lag_counts_committed_records_only() -> None:
    metrics = Metrics()
    metrics.pending_input_ts_ms.extend([1_000, 2_000])
    metrics.not_committed()  # the batch is handled again later
    metrics.pending_input_ts_ms.append(9_000)
    metrics.committed_now(10_500, metrics.pending_input_ts_ms)
    assert metrics.end_to_end_lag.observations == 1 and metrics.end_to_end_lag.total == 1.5
    buckets = dict(metrics.end_to_end_lag.cumulative())
    assert buckets["1.0"] == 0 and buckets["5.0"] == 1
