"""Failure injection for pit-streams (``python -m bench.chaos`` / ``make chaos``).

Real broker (``infra/kafka/kafka.sh``), real worker subprocesses running ``apps.nav``, and a
checker that reads every input, output and dead letter back. The scenarios:

- ``kill``: SIGKILL the worker at random moments, restart it, many times;
- ``broker-restart``: stop and start the broker mid-run;
- ``rebalance``: a second worker joins, leaves (SIGTERM), joins, dies (SIGKILL);
- ``hostile``: garbage, truncated, bit-flipped, oversized, mis-keyed, cross-tenant, mistyped,
  badly hashed and undecodable records, duplicates and handler failures among valid fills;
- ``dead-letter-limit``: invalid records close to the broker's 1 MiB limit, whose dead-letter
  copy (the same bytes plus headers) the worker's producer cannot send.

``run_scenario(name, broker, work_dir, short=...)`` is the programmatic entry (tests use it);
``bench.chaos.checker`` documents the figures.
"""

from bench.chaos.scenarios import SCENARIOS, run_scenario

__all__ = ["SCENARIOS", "run_scenario"]
