"""Command line shared by the hand-written contender loops."""

from __future__ import annotations

import argparse
import os
import signal
import threading


def parse_args(description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--broker", required=True)
    p.add_argument("--input", required=True, help="input topic")
    p.add_argument("--output", required=True, help="output topic")
    p.add_argument("--group", required=True, help="consumer group id (fresh per run)")
    p.add_argument("--data-dir", required=True, help="where the dedupe store lives")
    p.add_argument("--batch", type=int, default=1000, help="max records per poll batch")
    p.add_argument("--name", required=True, help="producer name put in output envelopes")
    return p.parse_args()


def stop_flag() -> threading.Event:
    """An event set on SIGTERM/SIGINT, so loops finish their batch and close cleanly."""
    evt = threading.Event()

    def _handler(signum: int, frame: object) -> None:
        evt.set()

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
    return evt


def dedupe_dir(data_dir: str) -> str:
    return os.path.join(data_dir, "dedupe")
