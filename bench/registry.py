"""The contenders: how to start each one, with which interpreter, and what it is compared to."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
QUIX_VENV = REPO / "bench" / ".venvs" / "quix"
QUIX_REQUIREMENTS = ("quixstreams>=3,<4", "pit-proto>=0.3.1,<0.4", "rocksdict")
PIT_CLI = REPO / "pit_streams" / "cli" / "worker.py"  # `pit-streams worker` and its options
#: The pit-streams app module the worker is started with (``-A``); it reads ``BENCH_*`` env.
PIT_APP_MODULE = "bench.contenders.pit_app"
PIT_APP_FILE = REPO / "bench" / "contenders" / "pit_app.py"


@dataclass(frozen=True)
class RunSpec:
    """Everything a contender process needs to know for one run."""

    broker: str
    input_topic: str
    output_topic: str
    group: str
    data_dir: str
    batch: int
    name: str  # producer name written into output envelopes
    catalog: str | None = None  # topic catalog for the pit-streams worker (PIT_CATALOG)


def _common_args(s: RunSpec) -> list[str]:
    return [
        "--broker", s.broker, "--input", s.input_topic, "--output", s.output_topic,
        "--group", s.group, "--data-dir", s.data_dir, "--batch", str(s.batch), "--name", s.name,
    ]  # fmt: skip


def _bench_env(s: RunSpec) -> dict[str, str]:
    return {
        "BENCH_BROKER": s.broker,
        "BENCH_INPUT_TOPIC": s.input_topic,
        "BENCH_OUTPUT_TOPIC": s.output_topic,
        "BENCH_GROUP_ID": s.group,
        "BENCH_DATA_DIR": s.data_dir,
        "BENCH_BATCH": str(s.batch),
        "BENCH_PRODUCER_NAME": s.name,
    }


@dataclass
class Contender:
    name: str
    client: str  # "confluent" | "aiokafka": decides which raw loop it is compared with
    python: str
    argv: Callable[[RunSpec], list[str]]
    packages: tuple[str, ...]
    env: Callable[[RunSpec], dict[str, str]] = _bench_env
    enabled: bool = True
    note: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    #: Needs ``pit.v{N}.{domain}.{event}`` topic names and a catalog (see bench.topics).
    platform_topics: bool = False

    @property
    def baseline(self) -> str:
        return f"raw-{self.client}"

    def process_env(self, spec: RunSpec) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env(spec))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        return env


def probe_versions(python: str, packages: tuple[str, ...]) -> dict[str, str]:
    """Interpreter path/version and package versions as seen by ``python`` itself."""
    code = (
        "import json, sys, importlib.metadata as m\n"
        "out = {'python': sys.version.split()[0], 'executable': sys.executable}\n"
        f"for p in {list(packages)!r}:\n"
        "    try:\n"
        "        out[p] = m.version(p)\n"
        "    except m.PackageNotFoundError:\n"
        "        out[p] = 'not installed'\n"
        "print(json.dumps(out))\n"
    )
    try:
        res = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60, check=True)
        return dict(json.loads(res.stdout))
    except (OSError, subprocess.SubprocessError, ValueError) as e:
        return {"error": f"{type(e).__name__}: {e}"}


RAW_PACKAGES = ("protobuf", "pit-proto", "rocksdict")


def raw_confluent() -> Contender:
    return Contender(
        "raw-confluent",
        "confluent",
        sys.executable,
        lambda s: [sys.executable, "-m", "bench.contenders.raw_confluent", *_common_args(s)],
        ("confluent-kafka", *RAW_PACKAGES),
    )


def raw_aiokafka() -> Contender:
    return Contender(
        "raw-aiokafka",
        "aiokafka",
        sys.executable,
        lambda s: [sys.executable, "-m", "bench.contenders.raw_aiokafka", *_common_args(s)],
        ("aiokafka", *RAW_PACKAGES),
    )


def faust() -> Contender:
    c = Contender(
        "faust",
        "aiokafka",
        sys.executable,
        lambda s: [sys.executable, "-m", "bench.contenders.faust_app", "worker", "-l", "warn"],
        ("faust-streaming", "mode-streaming", "aiokafka", *RAW_PACKAGES),
    )
    try:
        import faust as _faust  # noqa: F401
    except ImportError as e:
        c.enabled, c.note = False, f"faust-streaming not importable: {e}"
    return c


#: Quix contender name -> (changelog topics, processing guarantee); see bench/contenders/quix_app.py.
QUIX_VARIANTS: dict[str, tuple[str, str]] = {
    "quix": ("on", "at-least-once"),
    "quix-no-changelog": ("off", "at-least-once"),
    "quix-eos": ("on", "exactly-once"),
}


def quix(python: str | None, name: str = "quix") -> Contender:
    """A Quix Streams variant of :data:`QUIX_VARIANTS`: ``quix`` has its changelog on (like
    pit-streams), ``quix-no-changelog`` off, ``quix-eos`` is exactly-once with the changelog on."""
    py = python or str(QUIX_VENV / "bin" / "python")
    changelog, guarantee = QUIX_VARIANTS[name]

    def env(s: RunSpec) -> dict[str, str]:
        return {**_bench_env(s), "BENCH_QUIX_CHANGELOG": changelog, "BENCH_QUIX_GUARANTEE": guarantee}

    c = Contender(
        name,
        "confluent",
        py,
        lambda s: [py, "-m", "bench.contenders.quix_app", *_common_args(s)],
        ("quixstreams", "confluent-kafka", *RAW_PACKAGES),
        env=env,
        note=f"changelog {changelog}, {guarantee}",
    )
    if not Path(py).exists():
        c.enabled, c.note = False, f"no Quix virtualenv at {QUIX_VENV} (built by `python -m bench`)"
    return c


def _pit_env(s: RunSpec) -> dict[str, str]:
    env = _bench_env(s)
    env["PIT_LOG_LEVEL"] = "WARNING"
    env["PIT_HEALTH_PORT"] = "0"  # a free port: two runs never collide on 8080
    if s.catalog:
        env["PIT_CATALOG"] = s.catalog
    return env


#: Contender name suffix per ``--guarantee`` (at-least-once, the default, has none).
GUARANTEE_SUFFIX = {"at_least_once": "", "exactly_once": "-eos"}


def runtime_has_guarantee_option() -> bool:
    """Whether ``pit-streams worker`` knows ``--guarantee`` (issue 9's exactly-once option)."""
    return PIT_CLI.exists() and "--guarantee" in PIT_CLI.read_text(encoding="utf-8")


def pit_streams(transport: str, app_module: str = PIT_APP_MODULE, guarantee: str = "at_least_once") -> Contender:
    """The pit-streams runtime, measured from outside like every other contender; ``guarantee``
    ``exactly_once``: ``worker --guarantee exactly_once`` (outputs, changelog and input offsets in
    one Kafka transaction), named ``pit-streams-<transport>-eos``."""

    def argv(s: RunSpec) -> list[str]:
        return [
            sys.executable, "-m", "pit_streams.cli", "worker", "-A", app_module,
            "--broker", s.broker, "--data-dir", s.data_dir, "--transport", transport,
            "--batch-size", str(s.batch),
            *(["--guarantee", guarantee] if guarantee != "at_least_once" else []),
        ]  # fmt: skip

    def env(s: RunSpec) -> dict[str, str]:
        return {**_pit_env(s), "PIT_GUARANTEE": guarantee}

    c = Contender(
        f"pit-streams-{transport}{GUARANTEE_SUFFIX[guarantee]}",
        transport,
        sys.executable,
        argv,
        ("pit-streams", "confluent-kafka" if transport == "confluent" else "aiokafka", *RAW_PACKAGES, "PyYAML"),
        env=env,
        platform_topics=True,
    )
    transport_file = REPO / "pit_streams" / "transport" / f"{transport}.py"
    if not PIT_CLI.exists():
        c.enabled, c.note = False, f"pending runtime: {PIT_CLI.relative_to(REPO)} does not exist yet"
    elif not transport_file.exists():
        c.enabled, c.note = False, f"pending runtime: {transport_file.relative_to(REPO)} does not exist yet"
    elif app_module == PIT_APP_MODULE and not PIT_APP_FILE.exists():
        c.enabled, c.note = False, f"pending runtime: {PIT_APP_FILE.relative_to(REPO)} not written yet"
    elif guarantee != "at_least_once" and not runtime_has_guarantee_option():
        c.enabled, c.note = False, "pending runtime: `pit-streams worker` has no --guarantee option yet (issue 9)"
    return c


def build_quix_venv(log: Callable[[str], None]) -> str | None:
    """Create/refresh ``bench/.venvs/quix``; returns its python, or None if it cannot be built."""
    py = QUIX_VENV / "bin" / "python"
    marker = QUIX_VENV / ".bench-requirements"
    wanted = "\n".join(QUIX_REQUIREMENTS)
    if py.exists() and marker.exists() and marker.read_text() == wanted:
        return str(py)
    log(f"building Quix virtualenv {QUIX_VENV} ({' '.join(QUIX_REQUIREMENTS)}) ...")
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(QUIX_VENV)], check=True)
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", *QUIX_REQUIREMENTS],
            check=True,
            timeout=900,
        )
    except (OSError, subprocess.SubprocessError) as e:
        log(f"Quix virtualenv build failed: {e}")
        return None
    marker.write_text(wanted)
    return str(py)
