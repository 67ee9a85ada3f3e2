"""Issue 11: ``import pit_streams``, and declaring an app, load no YAML, RocksDB or Kafka client.

Each check runs in a fresh interpreter: this test process has long since imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("yaml", "rocksdict", "confluent_kafka", "aiokafka")

_PROBE = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r})))
"""


def heavy_modules_after(*modules: str) -> list[str]:
    """The heavy modules a fresh interpreter holds after importing ``modules``, in order."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(heavy=HEAVY), *modules],
        cwd=REPO, capture_output=True, text=True, check=True, timeout=60,
    )
    loaded: list[str] = json.loads(out.stdout)
    return loaded


@pytest.mark.parametrize(
    "modules",
    [
        ("pit_streams",),
        ("apps.nav",),  # an App with a handler, declared: still no I/O library
        ("pit_streams.contract",),  # the bench's raw contenders use the contract alone
        ("bench.work",),
    ],
)
def test_face_loads_no_yaml_rocksdb_or_kafka_client(modules: tuple[str, ...]) -> None:
    assert heavy_modules_after(*modules) == []


def test_public_names_resolve_without_heavy_imports() -> None:
    probe = "import pit_streams\n" + "".join(f"pit_streams.{n}\n" for n in ("Producer", "ProducerSpec", "App"))
    out = subprocess.run(
        [sys.executable, "-c", probe + _PROBE.format(heavy=HEAVY)], cwd=REPO, capture_output=True, text=True,
        check=True, timeout=60,
    )
    assert json.loads(out.stdout) == []


def test_the_probe_sees_a_heavy_import() -> None:
    """Without this the checks above could pass by looking at nothing: the catalog does read YAML."""
    assert "yaml" in heavy_modules_after("pit_streams.catalog")
