"""The chaos scenarios in short mode, in-process (``bench.chaos.run_scenario``), against a private
broker this module starts and owns — the broker-restart scenario stops and starts it, so it is
not the session broker. Real worker subprocesses; every figure comes from the checker reading
the topics back (see ``bench/chaos/checker.py``).

Targets: no lost input, no duplicate effect, NAV values equal to the offline replay, and for
hostile input every bad record dead-lettered with the expected ``pit.reason`` and no worker crash.
Issue 9: ``longrun`` (the log cleaner forced on the changelog, marks expiring, fresh-disk
restarts, re-sent fills inside the TTL), ``zombie`` (a worker resumed after losing its partitions,
then a fresh-disk restore) and ``eos`` (SIGKILLs in exactly-once mode: 0 raw duplicate records for
a read_committed reader).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # bench/ and apps/ live at the repository root, outside the package
    sys.path.insert(0, str(REPO))

from bench.chaos import run_scenario  # noqa: E402
from bench.chaos.broker import PrivateBroker  # noqa: E402
from bench.chaos.workers import stop_all  # noqa: E402

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def chaos_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateBroker]:
    broker = PrivateBroker("chaos-test", tmp_path_factory.mktemp("chaos-kafka"))
    broker.start_broker()
    try:
        yield broker
    finally:
        stop_all()
        broker.close()


def _run(name: str, broker: PrivateBroker, tmp_path: Path, **kw: Any) -> dict[str, Any]:
    result = run_scenario(name, broker, tmp_path / name, short=True, seed=1234, **kw)
    print(json.dumps({k: result[k] for k in ("figures", "events", "anomalies", "log_excerpts")}, indent=1,
                     default=str))  # fmt: skip
    assert not result["error"], result["error"]
    assert result["figures"] is not None, result["anomalies"]
    return result


def _explain(result: dict[str, Any]) -> str:
    f = result["figures"]
    return f"anomalies: {result['anomalies']}; samples: {f['samples']}; logs: {result['logs']}"


def _assert_contract(result: dict[str, Any]) -> None:
    f = result["figures"]
    assert f["valid_inputs"] > 0 and f["input_records"] >= f["valid_inputs"]
    assert f["lost"] == 0, _explain(result)
    assert f["duplicate_effects"] == 0, _explain(result)
    assert f["wrong_values"] == 0, _explain(result)
    assert f["unexpected_outputs"] == 0, _explain(result)
    assert f["distinct_outputs"] == f["valid_inputs"], _explain(result)


def test_kill(chaos_broker: PrivateBroker, tmp_path: Path) -> None:
    result = _run("kill", chaos_broker, tmp_path)
    _assert_contract(result)
    kills = [e for e in result["events"] if e["event"].startswith("SIGKILL")]
    assert len(kills) >= 3, result["events"]


def test_rebalance(chaos_broker: PrivateBroker, tmp_path: Path) -> None:
    result = _run("rebalance", chaos_broker, tmp_path)
    _assert_contract(result)
    moves = [e["event"] for e in result["events"]]
    assert any("A->B" in m for m in moves) and any("B->A (after SIGTERM)" in m for m in moves), moves
    assert any("B->A (after SIGKILL" in m for m in moves), moves


def test_hostile_input(chaos_broker: PrivateBroker, tmp_path: Path) -> None:
    result = _run("hostile", chaos_broker, tmp_path)
    _assert_contract(result)
    f = result["figures"]
    assert f["expected_dead_letters"] > 0 and f["expected_duplicates"] > 0
    # Every bad record dead-lettered once, with the reason unwrap gives for its very bytes, unaltered.
    assert f["dlq_missing"] == 0, _explain(result)
    assert f["dlq_wrong_reason"] == 0, _explain(result)
    assert f["dlq_unexpected"] == 0, _explain(result)
    assert f["dlq_altered"] == 0, _explain(result)
    assert f["dead_letters"] - f["dlq_raw_duplicates"] == f["expected_dead_letters"], _explain(result)
    assert result["unexpected_exits"] == 0, result["worker_exits"]


def test_dead_letter_limit(chaos_broker: PrivateBroker, tmp_path: Path) -> None:
    # Refused records of ~1.03 MB and within 100 B of the broker's 1,048,588 B: their dead-letter
    # copies are larger than the source. They must be dead-lettered whole, without a crash or a
    # wedged partition (before bad82b5 the confluent worker crash-looped and aiokafka rewound forever).
    result = _run("dead-letter-limit", chaos_broker, tmp_path)
    _assert_contract(result)
    f = result["figures"]
    assert f["expected_dead_letters"] == 2
    assert f["dlq_missing"] == 0 and f["dlq_wrong_reason"] == 0 and f["dlq_altered"] == 0, _explain(result)
    assert result["unexpected_exits"] == 0, result["worker_exits"]


def _events(result: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    return [e for e in result["events"] if e["event"].startswith(prefix)]


def test_longrun_compacted_changelog(chaos_broker: PrivateBroker, tmp_path: Path) -> None:
    # Issue 9, items 1 and 5: state and dedupe marks must survive the log cleaner (records and
    # tombstones removed, marks expired mid-run) and fresh-disk restores.
    result = _run("longrun", chaos_broker, tmp_path)
    cleaned = _events(result, "cleaner observed")
    assert cleaned and all(e["count"] < e["first_count"] for e in cleaned), result["events"]
    assert any(e["first_tombstones"] > e["tombstones"] for e in cleaned), cleaned  # tombstones removed too
    restarts = _events(result, "restart #")
    assert any("SIGTERM" in e["event"] for e in restarts) and any("SIGKILL" in e["event"] for e in restarts)
    resent = sum(e.get("resend", 0) for e in restarts)
    assert resent > 0, result["events"]
    _assert_contract(result)
    f = result["figures"]
    assert f["expected_duplicates"] == resent, _explain(result)  # every re-send deduplicated, none applied
    assert f["reapplied"] == 0, _explain(result)
    assert _events(result, "tail fed"), result["events"]  # every cell's next output after the last restore


def test_zombie_is_fenced_or_ignored(chaos_broker: PrivateBroker, tmp_path: Path) -> None:
    # Issue 9, item 3: a worker stopped inside a checkpoint past its session timeout, resumed after
    # its partitions moved: a later restore from the changelog must not see its late writes.
    result = _run("zombie", chaos_broker, tmp_path)
    assert _events(result, "A SIGSTOPped with a checkpoint in flight"), result["anomalies"]
    assert _events(result, "B owns every partition") and _events(result, "A SIGCONTed"), result["events"]
    _assert_contract(result)
    assert result["figures"]["reapplied"] == 0, _explain(result)


def test_exactly_once_kills(chaos_broker: PrivateBroker, tmp_path: Path) -> None:
    # Issue 9, the exactly-once option: SIGKILLs leave a read_committed reader no duplicate record.
    result = _run("eos", chaos_broker, tmp_path)
    assert result["guarantee"] == "exactly_once"
    assert len(_events(result, "SIGKILL")) >= 3, result["events"]
    _assert_contract(result)
    f = result["figures"]
    assert f["raw_duplicates"] == 0, _explain(result)
    assert f["nav_open_transactions"] == {} and f["nav_read_short"] == {}, _explain(result)  # none left open
    assert result["passed"], _explain(result)


def test_broker_restart(chaos_broker: PrivateBroker, tmp_path: Path) -> None:
    # Last: it stops and starts the module's broker.
    result = _run("broker-restart", chaos_broker, tmp_path)
    _assert_contract(result)
    assert any(e["event"].startswith("broker started") for e in result["events"]), result["events"]
