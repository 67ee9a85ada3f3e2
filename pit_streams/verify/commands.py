"""Registers ``attest`` and ``verify`` with the ``pit-streams`` parser."""

from __future__ import annotations

import argparse

from pit_streams.verify import attest, command


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    attest.add_parser(sub)
    command.add_parser(sub)
