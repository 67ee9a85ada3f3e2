"""The bench's goals block puts each latency goal next to what the machine itself allows."""

from __future__ import annotations

from typing import Any

from bench import report


def _contender(baseline: str, p99_ms: float, rate: float = 5000.0, ok: bool = True) -> dict[str, Any]:
    return {"baseline": baseline, "latency": {"ok": ok, "offered_rate": rate, "p99_ms": p99_ms}}


def _latency_goal(contenders: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    return next(g for g in report.goals(contenders) if g["goal"].startswith(f"{name} p99"))


def test_a_latency_goal_names_the_raw_loops_p99_at_the_same_rate() -> None:
    contenders = {
        "raw-confluent": _contender("raw-confluent", 486.571),
        "pit-streams-confluent": _contender("raw-confluent", 2080.65),
    }
    goal = _latency_goal(contenders, "pit-streams-confluent")
    assert goal["floor_p99_ms"] == 486.57
    assert goal["goal"].endswith("(the raw loop raw-confluent at the same rate: p99 486.57 ms)")
    assert goal["met"] is False and goal["value"] == 2080.65


def test_no_floor_from_another_rate_or_a_failed_raw_run() -> None:
    for raw in (_contender("raw-confluent", 40.0, rate=2000.0), _contender("raw-confluent", 40.0, ok=False)):
        contenders = {"raw-confluent": raw, "pit-streams-confluent": _contender("raw-confluent", 45.0)}
        goal = _latency_goal(contenders, "pit-streams-confluent")
        assert goal["floor_p99_ms"] is None
        assert "raw loop" not in goal["goal"]
        assert goal["met"] is True


def _throughput(raw: float | None, pit: float, other: str, theirs: float) -> dict[str, dict[str, Any]]:
    contenders: dict[str, dict[str, Any]] = {
        "pit-streams-confluent": {"baseline": "raw-confluent", "records_per_s_median": pit},
        other: {"baseline": "raw-confluent", "records_per_s_median": theirs},
    }
    if raw is not None:
        contenders["raw-confluent"] = {"baseline": "raw-confluent", "records_per_s_median": raw}
    return contenders


def _throughput_goal(contenders: dict[str, dict[str, Any]], text: str) -> dict[str, Any]:
    return next(g for g in report.goals(contenders) if g["goal"].startswith(text))


def test_a_goal_against_another_framework_names_what_the_raw_loop_itself_reaches() -> None:
    goal = _throughput_goal(_throughput(11_508.0, 8_658.0, "faust", 1_722.0), "pit-streams-confluent >= 10x faust")
    assert goal["ceiling_ratio"] == 6.683
    assert goal["goal"].endswith("(the raw loop raw-confluent itself: 6.683x)")
    assert goal["met"] is False and goal["value"] == 5.028


def test_no_ceiling_without_the_raw_loop_or_against_a_raw_loop() -> None:
    goal = _throughput_goal(_throughput(None, 8_658.0, "faust", 1_722.0), "pit-streams-confluent >= 10x faust")
    assert goal["ceiling_ratio"] is None and "raw loop" not in goal["goal"]
    goal = _throughput_goal(_throughput(11_508.0, 8_658.0, "faust", 1_722.0),
                            "pit-streams-confluent >= 0.9x raw-confluent")
    assert goal["ceiling_ratio"] is None and "itself" not in goal["goal"]
