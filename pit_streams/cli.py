"""``pit-streams``: parse, load, hand over. No business logic lives here.

    pit-streams worker -A apps.nav [--broker host:port] [--data-dir DIR] [--transport confluent|aiokafka]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pit_streams.acl import add_acl_command
from pit_streams.catalog import add_topics_command
from pit_streams.errors import ConfigError, PitStreamsError
from pit_streams.k8s import add_k8s_command
from pit_streams.loader import load_app
from pit_streams.transport.base import GUARANTEES, TransportError
from pit_streams.transport.factory import TRANSPORTS, make_transport
from pit_streams.verify.commands import add_parser as add_verify_commands

DATA_DIR_ENV = "PIT_DATA_DIR"
HEALTH_PORT_ENV = "PIT_HEALTH_PORT"
log = logging.getLogger("pit_streams.cli")

Command = Callable[[argparse.Namespace], int]


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (-1 disables, 0 picks a free one)") from None
    if not -1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (-1 disables, 0 picks a free one)")
    return port


def health_port(arg: int | None) -> int:
    """``--health-port``, else ``$PIT_HEALTH_PORT``, else 8080."""
    if arg is not None:
        return arg
    text = os.environ.get(HEALTH_PORT_ENV, "8080")
    try:
        return _port(text)
    except argparse.ArgumentTypeError as exc:
        raise ConfigError(f"{HEALTH_PORT_ENV}={text!r}: {exc}: set it to a port or pass --health-port") from None


def _worker_args(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("worker", help="run an app's handlers")
    p.add_argument("-A", "--app", required=True, help="handler module, e.g. apps.nav (or apps.nav:attr)")
    p.add_argument("--broker", help="Kafka bootstrap host:port (default: $PIT_KAFKA_BOOTSTRAP)")
    p.add_argument("--data-dir", help=f"local state directory (default: ${DATA_DIR_ENV} or ./.pit-data)")
    p.add_argument("--transport", default=os.environ.get("PIT_TRANSPORT", "confluent"), choices=TRANSPORTS)
    p.add_argument("--catalog", help="topic catalog (default: $PIT_CATALOG or infra/topics.yaml)")
    p.add_argument("--health-port", type=_port, default=None,
                   help=f"port for /healthz, /readyz and /metrics (default: ${HEALTH_PORT_ENV} or 8080);"
                   " 0 picks a free one, -1 disables")
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
    p.add_argument("--idle-exit", type=float, default=None, metavar="SECONDS",
                   help="exit 0 after this long without records (demos, tests)")
    p.set_defaults(command=_run_worker)


def _run_worker(args: argparse.Namespace) -> int:
    from pit_streams.catalog import check_app_against_catalog
    from pit_streams.observe import HealthServer
    from pit_streams.runtime.worker import Worker, WorkerSettings

    port = health_port(args.health_port)
    app = load_app(args.app)
    check_app_against_catalog(app, args.catalog)
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
                                                   signer=signer, trust=trust))
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
            idle_since = time.monotonic()
            while not stop.is_set():
                if await worker.run_once():
                    idle_since = time.monotonic()
                elif args.idle_exit is not None and time.monotonic() - idle_since > args.idle_exit:
                    break
        finally:
            await worker.stop()
            if health is not None:
                await health.stop()
        log.info("worker stopped cleanly: %d processed, %d deduped, %d rejected", worker.metrics.processed,
                 worker.metrics.deduped, sum(worker.metrics.rejected.values()))

    asyncio.run(main())
    return 0


_EXTRA_COMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    add_topics_command,
    add_acl_command,
    add_k8s_command,
    add_verify_commands,  # attest, verify (issue 13)
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pit-streams", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--log-level", default=os.environ.get("PIT_LOG_LEVEL", "INFO"))
    sub = parser.add_subparsers(dest="cmd", required=True)
    _worker_args(sub)
    for add in _EXTRA_COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    command: Command = args.command
    try:
        return command(args)
    except (PitStreamsError, TransportError, ValueError) as exc:
        print(f"pit-streams: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
