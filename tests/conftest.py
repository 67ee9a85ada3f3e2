"""Session-wide fixtures.

``kafka_bootstrap`` starts a PRIVATE Apache Kafka broker (infra/kafka/kafka.sh, KRaft, free
loopback ports, its own temporary data dir) the first time a test asks for it and stops it at the
end of the session, also when tests fail. Tests never use a broker started by hand: while the
session broker runs, ``PIT_KAFKA_BOOTSTRAP`` is pointed at it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Test modules import the helpers as `from kafka_support import ...`; make that work whether or
# not tests/ is a package (pytest's default import mode only adds tests/ when it is not).
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from kafka_support import BrokerHandle, start_broker

_SUMMARY_LINES: list[str] = []


def _say(config: pytest.Config, line: str) -> None:
    """Print a line to the terminal now, even under -q and output capturing."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capman = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capman is None:
        print(line, file=sys.__stderr__, flush=True)
        return
    with capman.global_and_fixture_disabled():
        tw = getattr(reporter, "_tw", None)
        if tw is not None and tw.width_of_current_line:  # in the middle of a line of progress dots
            reporter.write("\n")
        reporter.write_line(line)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _SUMMARY_LINES:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def kafka_broker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerHandle]:
    """The session's private broker (see ``tests.kafka_support.BrokerHandle``)."""
    data_dir = tmp_path_factory.mktemp("kafka")
    handle = start_broker(data_dir)
    _say(
        request.config,
        f"kafka: started Apache Kafka {handle.version} (KRaft) on {handle.bootstrap}, pid {handle.pid}, "
        f"in {handle.start_seconds:.1f}s (log: {handle.server_log})",
    )
    previous = os.environ.get("PIT_KAFKA_BOOTSTRAP")
    os.environ["PIT_KAFKA_BOOTSTRAP"] = handle.bootstrap
    try:
        yield handle
    finally:
        if previous is None:
            os.environ.pop("PIT_KAFKA_BOOTSTRAP", None)
        else:
            os.environ["PIT_KAFKA_BOOTSTRAP"] = previous
        handle.stop()
        # Printed with the summary, so it does not land in the middle of the progress dots.
        _SUMMARY_LINES.append(f"kafka: stopped (pid {handle.pid}, Apache Kafka {handle.version} on {handle.bootstrap})")


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: BrokerHandle) -> str:
    """``"127.0.0.1:<port>"`` of the session's private Kafka broker."""
    return kafka_broker.bootstrap
