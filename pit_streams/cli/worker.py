"""``pit-streams worker -A apps.nav``: load an app, check it against the catalog, run its handlers."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from pit_streams.errors import ConfigError, PitStreamsError
from pit_streams.loader import load_app
from pit_streams.transport.base import GUARANTEES
from pit_streams.transport.factory import TRANSPORTS, make_transport
from pit_streams.transport.stall_watch import ClientStuck

DATA_DIR_ENV = "PIT_DATA_DIR"
HEALTH_PORT_ENV = "PIT_HEALTH_PORT"
CHECKPOINT_INTERVAL_ENV = "PIT_CHECKPOINT_INTERVAL_MS"
log = logging.getLogger("pit_streams.cli")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (-1 disables, 0 picks a free one)") from None
    if not -1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (-1 disables, 0 picks a free one)")
    return port


def _option_or_env(arg: int | None, env: str, default: str, parse: Callable[[str], int], fix: str) -> int:
    """The option's value, else the variable's parsed like the option's (a one-line error saying ``fix``)."""
    if arg is not None:
        return arg
    text = os.environ.get(env, default)
    try:
        return parse(text)
    except argparse.ArgumentTypeError as exc:
        raise ConfigError(f"{env}={text!r}: {exc}: {fix}") from None


def health_port(arg: int | None) -> int:
    """``--health-port``, else ``$PIT_HEALTH_PORT``, else 8080."""
    return _option_or_env(arg, HEALTH_PORT_ENV, "8080", _port, "set it to a port or pass --health-port")


MAX_CHECKPOINT_INTERVAL_MS = 60_000  # longer: exactly-once outputs hidden, a crash re-reads, for that long


def _interval_ms(text: str) -> int:
    try:
        ms = int(text)
    except ValueError:
        ms = -1
    if not 0 <= ms <= MAX_CHECKPOINT_INTERVAL_MS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of milliseconds from 0 to"
                                         f" {MAX_CHECKPOINT_INTERVAL_MS} (0: a checkpoint per poll)")
    return ms


def checkpoint_interval_ms(arg: int | None) -> int:
    """``--checkpoint-interval-ms``, else ``$PIT_CHECKPOINT_INTERVAL_MS``, else 100."""
    return _option_or_env(arg, CHECKPOINT_INTERVAL_ENV, "100", _interval_ms, "fix it or pass --checkpoint-interval-ms")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``pit-streams worker``."""
    p = sub.add_parser("worker", help="run an app's handlers")
    p.add_argument("-A", "--app", required=True, help="handler module, e.g. apps.nav (or apps.nav:attr)")
    p.add_argument("--broker", help="Kafka bootstrap host:port (default: $PIT_KAFKA_BOOTSTRAP)")
    p.add_argument("--data-dir", help=f"local state directory (default: ${DATA_DIR_ENV} or ./.pit-data)")
    p.add_argument("--transport", default=os.environ.get("PIT_TRANSPORT", "confluent"), choices=TRANSPORTS)
    p.add_argument("--catalog", help="topic catalog (default: $PIT_CATALOG or infra/topics.yaml)")
    p.add_argument("--health-port", type=_port, default=None,
                   help=f"port for /healthz, /readyz and /metrics, on all interfaces (0.0.0.0) (default:"
                   f" ${HEALTH_PORT_ENV} or 8080); 0 picks a free one (a second local worker), -1 disables")
    p.add_argument("--allow-plaintext", action="store_true", default=None,
                   help="connect without TLS to a non-loopback broker (default: refused unless"
                   " $PIT_KAFKA_ALLOW_PLAINTEXT=1; contract 4.1 wants mutual TLS)")
    p.add_argument("--guarantee", choices=GUARANTEES, default=os.environ.get("PIT_GUARANTEE") or None,
                   help="at_least_once or exactly_once (default: $PIT_GUARANTEE, else the App's own)")
    p.add_argument("--signing-key", default=os.environ.get("PIT_SIGNING_KEY") or None,
                   help="Ed25519 PEM private key (mounted from a Secret) signing every envelope written"
                   " (default: $PIT_SIGNING_KEY)")
    p.add_argument("--trust-bundle", default=os.environ.get("PIT_TRUST_BUNDLE") or None,
                   help="JSON {owner: PEM public key} for App(signed_inputs=...) (default: $PIT_TRUST_BUNDLE)")
    p.add_argument("--batch-size", type=int, default=2000)
    p.add_argument("--checkpoint-interval-ms", type=_interval_ms, default=None, metavar="MS",
                   help="a handled batch takes in further polls for this long before its checkpoint"
                   " begins, or until it holds --batch-size records (default: $PIT_CHECKPOINT_INTERVAL_MS"
                   " or 100; 0: a checkpoint per poll; docs/adr/0001)")
    p.add_argument("--standby", action="store_true", default=os.environ.get("PIT_STANDBY") == "1",
                   help="keep warm copies of the stores of partitions other members own, so a partition"
                   " moved here reads only its changelog's tail (docs/adr/0012; costs disk for every"
                   " partition and one more reader; default: on if $PIT_STANDBY=1)")
    p.add_argument("--idle-exit", type=float, default=None, metavar="SECONDS",
                   help="exit 0 after this long without records (demos, tests)")
    p.set_defaults(func=_run_worker)


def _run_worker(args: argparse.Namespace) -> int:
    from pit_streams.catalog import check_app_against_catalog
    from pit_streams.observe import HealthServer
    from pit_streams.runtime.preflight import check_topics_on_broker
    from pit_streams.runtime.worker import Worker, WorkerSettings

    port = health_port(args.health_port)
    interval_ms = checkpoint_interval_ms(args.checkpoint_interval_ms)
    app = load_app(args.app)
    check_app_against_catalog(app, args.catalog)
    check_topics_on_broker(app, args.catalog, args.broker, allow_plaintext=args.allow_plaintext)
    if args.guarantee not in (None, *GUARANTEES):
        raise PitStreamsError(f"PIT_GUARANTEE={args.guarantee!r} is not a guarantee: use {' or '.join(GUARANTEES)}")
    if args.batch_size < 1:
        raise PitStreamsError("--batch-size must be at least 1")
    data_dir = Path(args.data_dir or os.environ.get(DATA_DIR_ENV) or ".pit-data")
    transport = make_transport(args.transport, args.broker, client_id=app.producer,
                               allow_plaintext=args.allow_plaintext)
    from pit_streams.contract.signing import signing_settings

    signer, trust = signing_settings(app, args.signing_key, args.trust_bundle, args.catalog)
    worker = Worker(app, transport, WorkerSettings(data_dir, batch_size=args.batch_size, guarantee=args.guarantee,
                                                   signer=signer, trust=trust, standby=args.standby,
                                                   checkpoint_interval_s=interval_ms / 1000))
    for spec in app.handlers.values():
        if spec.migration_only:
            log.warning("MIGRATION_ONLY handler on %s accepts raw, non-envelope payloads", spec.topic)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        health = HealthServer(worker.metrics, app.group, port) if port >= 0 else None
        if health is not None:
            await health.start()
        try:
            await worker.start()
            log.info("worker %s (%s transport, %s) consuming %s", app.producer, args.transport, worker.guarantee,
                     ", ".join(app.reads()))
            await worker.run(stop, idle_exit_s=args.idle_exit)
        finally:
            await worker.stop()
            if health is not None:
                await health.stop()
        m = worker.metrics
        # Only committed work counts as done: a record handled in a batch that never committed is
        # read again by the next owner, so calling it processed would be a lie.
        handled = m.processed + m.deduped + sum(m.rejected.values())
        log.info("worker stopped cleanly: %d record(s) committed; %d handling(s) not committed (read again later)",
                 m.committed_records, max(0, handled - m.committed_records))

    try:
        asyncio.run(main())
    except ClientStuck as exc:
        # Its librdkafka thread may never return, and interpreter shutdown would wait for it:
        # exit now, for the supervisor to restart the worker (the restart aborts the transaction).
        print(f"pit-streams: {exc}", file=sys.stderr, flush=True)
        logging.shutdown()
        os._exit(2)
    return 0
