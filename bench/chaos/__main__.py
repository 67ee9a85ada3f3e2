"""``python -m bench.chaos`` (``make chaos``): failure injection against a real broker.

    python -m bench.chaos                    every scenario, full size (a private broker each)
    python -m bench.chaos --short            every scenario, short (about two minutes)
    python -m bench.chaos --scenario kill    one (repeatable: --scenario kill --scenario hostile)
    python -m bench.chaos --broker H:P       use a running loopback broker (broker-restart still
                                             gets a private one: it must stop and start it)
    python -m bench.chaos --transport aiokafka --seed 7 --out /tmp/chaos.json
    python -m bench.chaos --guarantee exactly_once   every scenario with `worker --guarantee exactly_once`

Scenarios: kill, broker-restart, rebalance, hostile (the four of the brief) and
dead-letter-limit (hostile records at the broker's size limit, which a worker must dead-letter).
Issue 9's: longrun (the log cleaner forced on the changelog, a short dedupe TTL, fresh-disk
restarts and re-sent fills inside the TTL), zombie (a worker SIGSTOPped past its session timeout,
then resumed, then a fresh-disk restore) and eos (the kill loop in exactly-once mode: 0 raw
duplicate records for a read_committed reader). In exactly-once mode every scenario must show
0 raw duplicates.
With ``--transport aiokafka`` every scenario but eos runs (exactly-once needs confluent).
Prints a table of the checker's figures per scenario and writes bench/results/chaos.json.
Exit status 1 if a scenario failed: lost inputs or duplicate effects (the targets), wrong NAV
values, or — hostile input — a dead letter missing/with the wrong reason, or a worker crash.
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.chaos import report
from bench.chaos.broker import Broker, ExternalBroker, PrivateBroker
from bench.chaos.scenarios import GUARANTEES, SCENARIOS, run_scenario
from bench.chaos.version import runtime_fingerprint
from bench.chaos.workers import stop_all


def log(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}" if not msg.startswith(("  ", "[")) else msg, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--short", action="store_true", help="short mode (CI-sized)")
    p.add_argument("--scenario", action="append", choices=SCENARIOS, help="run only this one (repeatable)")
    p.add_argument("--broker", help="existing loopback broker host:port for every scenario but broker-restart")
    p.add_argument("--transport", default="confluent", choices=("confluent", "aiokafka"))
    p.add_argument("--guarantee", default="at_least_once", choices=GUARANTEES,
                   help="the workers' --guarantee (default at_least_once; eos always runs exactly_once)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    p.add_argument("--out", type=Path, default=report.RESULTS, help=f"results file (default {report.RESULTS})")
    p.add_argument("--keep-logs", action="store_true", help="keep the work dir even when every scenario passed")
    args = p.parse_args(argv)
    if args.transport == "aiokafka":
        # The worker refuses exactly-once on aiokafka (no KIP-447 fencing); run, it would only
        # show up as every input lost.
        if args.guarantee == "exactly_once" or "eos" in (args.scenario or ()):
            p.error("exactly-once needs the confluent transport: drop --transport aiokafka,"
                    " or --guarantee exactly_once / --scenario eos")
        args.scenario = args.scenario or [name for name in SCENARIOS if name != "eos"]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C: workers killed, brokers stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    names = args.scenario or list(SCENARIOS)
    work = Path(tempfile.mkdtemp(prefix="pit-chaos-"))
    atexit.register(stop_all)
    log(f"scenarios {', '.join(names)} ({'short' if args.short else 'full'}), transport {args.transport},"
        f" guarantee {args.guarantee},"
        f" work dir {work}")  # fmt: skip
    results: list[dict[str, Any]] = []
    t0 = time.monotonic()
    for i, name in enumerate(names):
        broker: Broker
        private = args.broker is None or name == "broker-restart"
        broker = PrivateBroker(name, work) if private else ExternalBroker(args.broker)
        try:
            if isinstance(broker, PrivateBroker):
                secs = broker.start_broker()
                log(f"private broker for {name} on {broker.bootstrap} started in {secs:.1f}s")
            seed = None if args.seed is None else args.seed + i
            results.append(run_scenario(name, broker, work / name, short=args.short, transport=args.transport,
                                        seed=seed, say=log, guarantee=args.guarantee))  # fmt: skip
        finally:
            stop_all()
            broker.close()
        r = results[-1]
        log(f"{name}: {'PASS' if r['passed'] else 'FAIL'} in {r['seconds']:.0f}s")
    total = time.monotonic() - t0
    path = report.write(results, [sys.executable, "-m", "bench.chaos", *(argv if argv is not None else sys.argv[1:])],
                        args.out, short=args.short, transport=args.transport, guarantee=args.guarantee,
                        total_seconds=round(total, 1),
                        work_dir=str(work), runtime=runtime_fingerprint())  # fmt: skip
    print()
    print(report.table(results))
    text = report.details(results)
    if text:
        print()
        print(text)
    passed = all(r["passed"] for r in results)
    if passed and not args.keep_logs:
        shutil.rmtree(work, ignore_errors=True)
        where = "(work dir removed; --keep-logs keeps it)"
    else:
        where = f"worker logs in {work}"
    verdict = "all passed" if passed else "FAILED"
    print(f"\n{len(results)} scenario(s) in {total:.0f}s: {verdict}; results {path}; {where}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
