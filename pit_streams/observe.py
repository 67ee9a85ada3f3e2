"""Health and metrics over HTTP: ``/healthz`` (alive), ``/readyz`` (serving), ``/metrics`` (Prometheus)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from pit_streams.errors import ConfigError
from pit_streams.runtime.metrics import Metrics


class _MetricsCollector(Collector):
    """Reads the worker's plain counters at scrape time, so the hot path pays nothing."""

    def __init__(self, metrics: Metrics, group: str) -> None:
        self._m = metrics
        self._group = group

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        m, labels = self._m, ["group"]
        for name, value, doc in (
            ("pit_records_processed", m.processed, "Records handled successfully"),
            ("pit_records_deduped", m.deduped, "Records skipped as already-processed event_ids"),
            ("pit_outputs_emitted", m.emitted, "Enveloped outputs produced"),
            ("pit_handler_retries", m.handler_retries, "Handler attempts retried"),
            ("pit_commits", m.commits, "Offset commits after acknowledged side effects"),
            ("pit_delivery_failures", m.delivery_failures, "Batches not committed: broker did not ack"),
            ("pit_changelog_records_restored", m.restored_records, "Changelog records read back into partition stores"),
            ("pit_state_gaps", m.state_gaps, "Restored stores behind the group's committed offsets (state lost)"),
            ("pit_standby_records_applied", m.standby_records, "Changelog records applied to standby stores"),
        ):
            family = CounterMetricFamily(name, doc, labels=labels)
            family.add_metric([self._group], value)
            yield family
        rejected = CounterMetricFamily("pit_records_rejected", "Records dead-lettered", labels=["group", "reason"])
        for reason, count in sorted(m.rejected.items()):
            rejected.add_metric([self._group, reason], count)
        yield rejected
        latency = GaugeMetricFamily(
            "pit_handler_latency_seconds_avg", "Mean handler latency", labels=labels
        )
        latency.add_metric([self._group], m.handler_seconds_total / m.handler_calls if m.handler_calls else 0.0)
        yield latency
        for name, hist, doc in (
            ("pit_handler_latency_seconds", m.handler_latency, "Handler call duration"),
            ("pit_end_to_end_lag_seconds", m.end_to_end_lag, "Input envelope ts to the commit of its outcome"),
            ("pit_checkpoint_seconds", m.checkpoint_duration, "Checkpoint: transaction sent to stores written"),
            ("pit_checkpoint_wait_seconds", m.checkpoint_wait, "Of each, the wait after handling the next batch"),
        ):
            histogram = HistogramMetricFamily(name, doc, labels=labels)
            histogram.add_metric([self._group], hist.cumulative(), sum_value=hist.total)
            yield histogram
        standby = GaugeMetricFamily("pit_standby_partitions", "Partition stores kept warm for other members",
                                    labels=labels)
        standby.add_metric([self._group], m.standby_partitions)
        yield standby
        standby_lag = GaugeMetricFamily("pit_standby_lag_records", "Changelog offsets the standby stores are behind"
                                        " (no sample: not known yet)", labels=labels)
        if m.standby_lag_records is not None:
            standby_lag.add_metric([self._group], m.standby_lag_records)
        yield standby_lag
        lag = GaugeMetricFamily("pit_commit_lag", "End offset minus committed offset", labels=["group", "partition"])
        for tp, end in sorted(m.end_offsets.items()):
            lag.add_metric([self._group, tp], max(0, end - m.committed_offsets.get(tp, 0)))
        yield lag


# A probe sends one short request line; anything slower or longer is a stuck or hostile client
# holding a connection open, so it is closed instead of waited for.
READ_TIMEOUT_S = 5.0
MAX_REQUEST_LINE = 8192
_PHRASES = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}


class HealthServer:
    def __init__(self, metrics: Metrics, group: str, port: int, host: str = "0.0.0.0",
                 read_timeout_s: float = READ_TIMEOUT_S) -> None:
        self._metrics = metrics
        self._registry = CollectorRegistry()
        self._registry.register(_MetricsCollector(metrics, group))
        self._host, self._port = host, port
        self._read_timeout_s = read_timeout_s
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(self._serve, self._host, self._port,
                                                      limit=MAX_REQUEST_LINE)
        except OSError as exc:
            raise ConfigError(
                f"health port {self._port} on {self._host} is not available ({exc.strerror}): pass --health-port"
                f" with a free port (0 picks one, -1 disables) or set PIT_HEALTH_PORT"
            ) from None

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _respond(self, path: str) -> tuple[int, str, bytes]:
        m = self._metrics
        if path == "/healthz":
            return (200, "text/plain", b"ok\n") if m.healthy else (503, "text/plain", m.unhealthy_reason.encode())
        if path == "/readyz":
            ok = m.ready and m.healthy
            return (200, "text/plain", b"ready\n") if ok else (503, "text/plain", b"not ready\n")
        if path == "/metrics":
            return 200, "text/plain; version=0.0.4", generate_latest(self._registry)
        return 404, "text/plain", b"not found\n"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                request = await asyncio.wait_for(reader.readuntil(b"\n"), self._read_timeout_s)
            except (TimeoutError, asyncio.LimitOverrunError, asyncio.IncompleteReadError, ConnectionError):
                return  # too slow, too long or gone: close without an answer
            parts = request.decode("latin-1").split()
            status, ctype, body = self._respond(parts[1] if len(parts) > 1 else "/")
            head = (
                f"HTTP/1.1 {status} {_PHRASES[status]}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        finally:
            writer.close()
