"""Failure injection for pit-streams (``python -m bench.chaos`` / ``make chaos``).

Real broker (``infra/kafka/kafka.sh``), real worker subprocesses running ``apps.nav``, and a
checker that reads every input, output and dead letter back. The scenarios:

- ``kill``: SIGKILL the worker at random moments, restart it, many times;
- ``broker-restart``: stop and start the broker mid-run;
- ``rebalance``: a second worker joins, leaves (SIGTERM), joins, dies (SIGKILL);
- ``hostile``: garbage, truncated, bit-flipped, oversized, mis-keyed, cross-tenant, mistyped,
  badly hashed and undecodable records, duplicates and handler failures among valid fills;
- ``dead-letter-limit``: invalid records close to the broker's 1 MiB limit, whose dead-letter
  copy (the same bytes plus headers) the worker's producer cannot send;
- ``longrun`` (issue 9): the log cleaner forced on the changelog, dedupe marks expiring mid-run,
  half of the cells quiet for longer than the TTL, fresh-disk restarts once the cleaner was seen
  removing records and tombstones, re-sent fills inside the TTL, a last fresh-disk restore;
- ``zombie`` (issue 9): a worker SIGSTOPped inside a checkpoint past its session timeout while a
  second one takes over and finishes the input, then SIGCONTed; a fresh-disk restore after;
- ``eos`` (issue 9): ``kill`` with ``--guarantee exactly_once``: 0 raw duplicate records for a
  read_committed reader.

``run_scenario(name, broker, work_dir, short=..., guarantee=...)`` is the programmatic entry
(tests use it); every scenario runs in either guarantee (``python -m bench.chaos --guarantee``);
``bench.chaos.checker`` documents the figures.
"""

from bench.chaos.scenarios import SCENARIOS, run_scenario

__all__ = ["SCENARIOS", "run_scenario"]
