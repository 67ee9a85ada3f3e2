"""``pit-streams attest TOPIC...``: the RFC 6962 root of an offset range, per partition and in total.

Only reads and hashes: two parties compare a range by one hash without replaying anything.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from pit_streams.errors import ConfigError
from pit_streams.transport.base import TopicPartition, Transport
from pit_streams.verify.ranges import OffsetRange, PartitionRoot, partition_root, read_range, total_root


async def attest(transport: Transport, topics: Sequence[str], partition: int | None,
                 offsets: OffsetRange) -> list[PartitionRoot]:
    """The root of ``offsets`` of every partition (or only ``partition``) of ``topics``; the
    transport must be started."""
    roots: list[PartitionRoot] = []
    for topic in topics:
        count = await transport.partitions_for(topic)
        if partition is not None and partition >= count:
            raise ConfigError(f"{topic} has {count} partition(s): pass --partition between 0 and {count - 1}")
        for p in range(count) if partition is None else [partition]:
            tp = TopicPartition(topic, p)
            roots.append(partition_root(tp, await read_range(transport, tp, offsets)))
    return roots


def format_roots(roots: Sequence[PartitionRoot]) -> list[str]:
    lines = []
    for r in roots:
        span = f"{r.first}..{r.last}" if r.count else "empty"
        lines.append(f"{r.tp}  offsets {span}  {r.count} record(s)  root {r.root.hex()}")
    lines.append(f"total  {sum(r.count for r in roots)} record(s)  root {total_root(roots).hex()}")
    return lines


def add_broker_options(p: argparse.ArgumentParser) -> None:
    """The broker options every reading command shares with ``worker``."""
    from pit_streams.transport.factory import TRANSPORTS

    p.add_argument("--broker", help="Kafka bootstrap host:port (default: $PIT_KAFKA_BOOTSTRAP)")
    p.add_argument("--transport", default=os.environ.get("PIT_TRANSPORT", "confluent"), choices=TRANSPORTS)
    p.add_argument("--allow-plaintext", action="store_true", default=None,
                   help="connect without TLS to a non-loopback broker (contract 4.1 wants mutual TLS)")


def add_range_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--partition", type=int, default=None, help="only this partition (default: all)")
    p.add_argument("--from", dest="start", type=int, default=0, metavar="OFFSET", help="first offset (default 0)")
    p.add_argument("--to", dest="end", type=int, default=None, metavar="OFFSET",
                   help="end offset, not included (default: the partition's current end)")


def offset_range(args: argparse.Namespace) -> OffsetRange:
    if args.start < 0 or (args.end is not None and args.end < args.start):
        raise ConfigError(f"--from {args.start} --to {args.end} is not a range: use 0 <= --from <= --to")
    if args.partition is not None and args.partition < 0:
        raise ConfigError(f"--partition {args.partition} is not a partition: use a number >= 0")
    return OffsetRange(args.start, args.end)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("attest", help="print the Merkle root of an offset range of topics")
    p.add_argument("topics", nargs="+", metavar="TOPIC")
    add_range_options(p)
    add_broker_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pit_streams.transport.factory import make_transport

    offsets = offset_range(args)
    transport = make_transport(args.transport, args.broker, client_id="pit-streams-attest",
                               allow_plaintext=args.allow_plaintext)

    async def main() -> list[PartitionRoot]:
        await transport.start(None)
        try:
            return await attest(transport, args.topics, args.partition, offsets)
        finally:
            await transport.stop()

    for line in format_roots(asyncio.run(main())):
        print(line, file=sys.stdout)
    return 0
