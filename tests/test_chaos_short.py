"""The chaos scenarios in short mode, in-process (``bench.chaos.run_scenario``), against a private
broker this module starts and owns — the broker-restart scenario stops and starts it, so it is
not the session broker. Real worker subprocesses; every figure comes from the checker reading
the topics back (see ``bench/chaos/checker.py``).

Targets: no lost input, no duplicate effect, NAV values equal to the offline replay, and for
hostile input every bad record dead-lettered with the expected ``pit.reason`` and no worker crash.
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


def _run(name: str, broker: PrivateBroker, tmp_path: Path) -> dict[str, Any]:
    result = run_scenario(name, broker, tmp_path / name, short=True, seed=1234)
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


def test_broker_restart(chaos_broker: PrivateBroker, tmp_path: Path) -> None:
    # Last: it stops and starts the module's broker.
    result = _run("broker-restart", chaos_broker, tmp_path)
    _assert_contract(result)
    assert any(e["event"].startswith("broker started") for e in result["events"]), result["events"]
