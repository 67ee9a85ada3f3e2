"""Plaintext Kafka only to loopback brokers unless explicitly allowed (issue 10, item 10; contract 4.1)."""

from __future__ import annotations

import pytest

from pit_streams.errors import ConfigError
from pit_streams.producer import Producer
from pit_streams.transport.factory import is_loopback, make_transport


@pytest.mark.parametrize("address", ["127.0.0.1:9092", "127.3.2.1:1", "localhost:9092", "LOCALHOST:1", "[::1]:9092",
                                     "PLAINTEXT://127.0.0.1:9092"])
def test_loopback_addresses(address: str) -> None:
    assert is_loopback(address)


@pytest.mark.parametrize("address", ["10.0.0.5:9092", "kafka.prod:9093", "[2001:db8::1]:9092", "128.0.0.1:9092",
                                     "localhost.evil.com:9092"])
def test_non_loopback_addresses(address: str) -> None:
    assert not is_loopback(address)


@pytest.fixture
def no_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIT_KAFKA_TLS_DIR", raising=False)
    monkeypatch.delenv("PIT_KAFKA_ALLOW_PLAINTEXT", raising=False)


@pytest.mark.parametrize("kind", ["confluent", "aiokafka"])
def test_plaintext_to_a_remote_broker_is_refused_naming_the_fix(no_tls: None, kind: str) -> None:
    with pytest.raises(ConfigError) as exc:
        make_transport(kind, "127.0.0.1:9092,kafka-1.prod:9093")
    message = str(exc.value)
    assert "\n" not in message and "kafka-1.prod:9093" in message and "127.0.0.1" not in message
    assert "PIT_KAFKA_TLS_DIR" in message and "--allow-plaintext" in message and "PIT_KAFKA_ALLOW_PLAINTEXT" in message


def test_the_producer_is_guarded_too(no_tls: None) -> None:
    with pytest.raises(ConfigError, match="PIT_KAFKA_TLS_DIR"):
        Producer("feed", broker="10.1.2.3:9092")


def test_opting_out_or_loopback_is_accepted(no_tls: None, monkeypatch: pytest.MonkeyPatch) -> None:
    make_transport("confluent", "127.0.0.1:9092")
    make_transport("confluent", "10.1.2.3:9092", allow_plaintext=True)
    monkeypatch.setenv("PIT_KAFKA_ALLOW_PLAINTEXT", "1")
    make_transport("aiokafka", "10.1.2.3:9092")
    Producer("feed", broker="10.1.2.3:9092")


def test_worker_start_up_check_honours_allow_plaintext(no_tls: None, capsys: pytest.CaptureFixture[str]) -> None:
    from pit_streams.cli import main

    # A name that never resolves: the worker gets past the plaintext guard and stops at reachability.
    broker = "kafka.invalid:9092"
    assert main(["worker", "-A", "apps.nav", "--broker", broker, "--allow-plaintext"]) == 2
    err = capsys.readouterr().err
    assert "refusing plaintext" not in err and "kafka.invalid" in err
    assert main(["worker", "-A", "apps.nav", "--broker", broker]) == 2
    assert "refusing plaintext" in capsys.readouterr().err
