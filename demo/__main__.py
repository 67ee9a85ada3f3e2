"""The vertical slice end to end on one machine: ``make demo`` (= ``.venv/bin/python -m demo``).

    tradefill-producer ──► pit.v1.exec.trade_fill ──► nav-consumer ──► pit.v1.acct.nav_update ──► nav-analytics
                                                        (apps.nav)                            (live table, PNG)

1. start a private Kafka broker (``devkit.broker``: free ports, temporary data dir), unless
   ``PIT_KAFKA_BOOTSTRAP`` names one;
2. create the topics: ``pit-streams topics apply --replicas-override 1`` when the catalog
   command exists, and any topic the apps need that is still missing directly;
3. start ``pit-streams worker -A apps.nav`` and ``-A apps.nav_analytics`` as subprocesses
   (``devkit.workers``) and wait until each answers ``/readyz``;
4. produce ``--fills`` fills (default 2 tenants x 4 cells, 2000 fills) at ``--rate`` per second;
5. wait until every fill has its NAV update and nav-analytics has committed all of them;
6. stop the workers (SIGTERM), print the final NAV per cell — checked against the NAV computed
   offline from the same fills — and the chart's path;
7. ``final_step`` (``demo/steps.py``): ``pit-streams verify -A apps.nav`` over what the run wrote,
   printing its one-line result (a mismatch fails the demo).

Whatever happens (failure, Ctrl-C, SIGTERM) everything it started is stopped, broker included.
Env: ``PIT_KAFKA_BOOTSTRAP`` (use this broker), ``PIT_ANALYTICS_OUT`` (default demo-out/nav.png).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Sequence
from pathlib import Path

from confluent_kafka import KafkaException

from demo.run import Processes, run
from demo.say import DemoError, elapsed, say
from pit_streams import PitStreamsError


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m demo", description=__doc__.splitlines()[0])
    p.add_argument("--fills", type=int, default=2000)
    p.add_argument("--rate", type=float, default=400.0, help="fills per second (default 400)")
    p.add_argument("--tenants", type=lambda s: [t for t in s.split(",") if t], default=["demo", "acme"])
    p.add_argument("--cells", type=int, default=4)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)

    def on_term(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    work = Path(tempfile.mkdtemp(prefix="pit-demo-"))
    procs = Processes(work)
    ok = interrupted = False
    try:
        run(args, procs)
        ok = True
    except KeyboardInterrupt:
        interrupted = True
        say("interrupted: cleaning up")
    except (DemoError, KafkaException, subprocess.SubprocessError, OSError, RuntimeError, PitStreamsError) as exc:
        say(f"FAILED: {exc!r}")
        if os.environ.get("PIT_DEMO_DEBUG"):
            traceback.print_exc()
        for module, w in procs.workers.items():
            print(f"---- {module} log ({w.log_path}):\n{w.log_tail()}", file=sys.stderr)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        procs.stop_all()
        if ok or interrupted:
            shutil.rmtree(work, ignore_errors=True)
        else:
            say(f"kept the logs in {work}")
    if interrupted:
        return 130
    say(f"done in {elapsed():.1f}s" if ok else "demo failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
