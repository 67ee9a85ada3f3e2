"""The demo's last step, after the NAV report: a check of the whole run from the outside.

``final_step`` gets everything a check needs (broker, topics, the run's fills and the NAV
updates observed); raise ``DemoError`` to fail the demo. It runs ``pit-streams verify -A apps.nav``
over what the run wrote: every NAV update and dead letter must be what the app's code, fed the
fills on the topic, produces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pit.events.v1.events_pb2 import TradeFillEvent

from demo.navtail import NavRecord
from demo.say import DemoError, say
from pit_streams.verify.command import verify_line


@dataclass(frozen=True)
class DemoRun:
    """What the finished run produced."""

    bootstrap: str
    fills_topic: str
    nav_topic: str
    series: str
    fills: Sequence[tuple[str, TradeFillEvent]]
    navs: Sequence[NavRecord]
    chart: Path
    work: Path


def final_step(run: DemoRun) -> None:
    say(f"{len(run.navs)} NAV updates of series {run.series} are on {run.nav_topic} at {run.bootstrap}")
    code, line = verify_line("apps.nav", broker=run.bootstrap)
    say(f"pit-streams verify -A apps.nav: {line}")
    if code != 0:
        raise DemoError(f"verify found a mismatch (exit {code}): {line}")
