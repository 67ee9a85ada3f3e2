"""The start-up check's rules: what a topic on the broker may differ in, and honest error names."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import pytest

from pit_streams.errors import PitStreamsError
from pit_streams.runtime.preflight import Actual, Expected, describe_topics, topic_problems

DLQ = Expected("pit.v1.ops.dead_letter", 3, "delete")


def test_more_partitions_than_catalogued_is_accepted_fewer_is_refused_naming_the_fix() -> None:
    assert topic_problems([DLQ], {DLQ.name: Actual(6, "delete")}) == []
    [problem] = topic_problems([DLQ], {DLQ.name: Actual(2, "delete")})
    assert problem.startswith(f"{DLQ.name} has 2 partitions (catalog 3)") and "infra/topics.yaml" in problem


class _Topic:
    def __init__(self, error: object = None) -> None:
        self.error = error
        self.partitions = {0: None, 1: None, 2: None}


class _Admin:
    def __init__(self, topics: dict[str, _Topic], config_future: Future[Any]) -> None:
        self._topics, self._future = topics, config_future

    def list_topics(self, timeout: float) -> Any:
        return type("Metadata", (), {"topics": self._topics})()

    def describe_configs(self, resources: list[Any], request_timeout: float) -> dict[Any, Future[Any]]:
        return {r: self._future for r in resources}


def test_a_metadata_error_is_named_not_called_missing() -> None:
    from confluent_kafka import KafkaError

    error = KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    never: Future[Any] = Future()
    actual = describe_topics(_Admin({DLQ.name: _Topic(error)}, never), [DLQ.name])
    [problem] = topic_problems([DLQ], actual)
    assert "does not exist" not in problem and "TOPIC_AUTHORIZATION_FAILED" in problem


def test_a_config_timeout_is_not_an_escaping_timeout_error() -> None:
    never: Future[Any] = Future()  # describe_configs never answers
    try:
        actual = describe_topics(_Admin({DLQ.name: _Topic()}, never), [DLQ.name], timeout_s=0.05)
    except PitStreamsError:
        return  # a clear refusal is fine too
    except TimeoutError:
        pytest.fail("TimeoutError escaped describe_topics")
    assert actual[DLQ.name].partitions == 3
