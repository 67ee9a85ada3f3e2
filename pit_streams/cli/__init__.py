"""``pit-streams``: parse, load, hand over. No business logic lives here.

    pit-streams worker -A apps.nav [--broker host:port] [--data-dir DIR] [--transport confluent|aiokafka]

One module per command, each exposing ``add_parser(sub)``, which sets ``func`` (``func(args) -> int``)
on its parser.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from pit_streams.cli import acl, k8s, topics, worker
from pit_streams.errors import PitStreamsError
from pit_streams.tools import deadletters, send, tail
from pit_streams.verify import commands as verify_commands

Command = Callable[[argparse.Namespace], int]

_COMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    worker.add_parser,
    topics.add_parser,
    acl.add_parser,
    k8s.add_parser,
    tail.add_parser,
    send.add_parser,
    deadletters.add_parser,
    verify_commands.add_parser,  # attest, verify (issue 13)
]


def build_parser() -> argparse.ArgumentParser:
    """The ``pit-streams`` argument parser, every command registered."""
    parser = argparse.ArgumentParser(prog="pit-streams", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--log-level", default=os.environ.get("PIT_LOG_LEVEL", "INFO"))
    sub = parser.add_subparsers(dest="cmd", required=True)
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a library error is one line on stderr and exit 2."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    command: Command = args.func
    try:
        return command(args)
    except (PitStreamsError, ValueError) as exc:  # ValueError: the standard library's, on bad input
        print(f"pit-streams: {exc}", file=sys.stderr)
        return 2
