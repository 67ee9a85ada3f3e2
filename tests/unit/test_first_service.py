"""The README's "Your first service" walk-through runs as written, and adding it keeps the suite green."""

from __future__ import annotations

import re
import shlex
import sys
import types
from pathlib import Path

import pytest

from apps import tradefill_producer
from pit_streams.catalog import app_catalog_problems, check_catalog, parse_catalog
from pit_streams.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def section() -> str:
    text = README.read_text().split("## Your first service", 1)[1]
    return text.split("\n## ", 1)[0]


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", section(), re.S)


def catalog_with_the_new_entries(tmp_path: Path) -> Path:
    [entries] = blocks("yaml")
    path = tmp_path / "topics.yaml"
    path.write_text((ROOT / "infra" / "topics.yaml").read_text() + "\n" + entries)
    return path


def exposure_module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    app_code = blocks("python")[0]
    module = types.ModuleType("apps.exposure")
    exec(compile(app_code, str(README), "exec"), module.__dict__)
    monkeypatch.setitem(sys.modules, "apps.exposure", module)
    return module


def test_the_catalog_entries_obey_the_contract_and_fit_the_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = catalog_with_the_new_entries(tmp_path)
    catalog, problems = parse_catalog(path.read_text(), path)
    assert problems == [] and check_catalog(catalog) == []
    app = exposure_module(monkeypatch).pit
    assert app_catalog_problems(app, catalog) == []
    assert app.changelog_topic in section()  # the README names the changelog it needs


async def test_the_harness_test_passes_against_the_new_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIT_CATALOG", str(catalog_with_the_new_entries(tmp_path)))
    exposure_module(monkeypatch)
    test_code = blocks("python")[1]
    module = types.ModuleType("readme_test_exposure")
    exec(compile(test_code, str(README), "exec"), module.__dict__)
    await module.test_exposure_after_two_fills(tmp_path / "data")


def test_every_command_of_the_walk_through_parses() -> None:
    parser = build_parser()
    commands = [line.split("#", 1)[0].strip().rstrip("&").strip() for line in blocks("sh")[0].splitlines()]
    seen = set()
    for command in filter(None, commands):
        argv = shlex.split(command)
        if argv[0] == "pit-streams":
            parser.parse_args(argv[1:])  # exits (fails the test) on an unknown option
            seen.add(argv[1])
        elif argv[:3] == ["python", "-m", "apps.tradefill_producer"]:
            assert "--count" in argv and "--broker" in argv
            producer_options = Path(tradefill_producer.__file__).read_text()
            assert all(f'"{a}"' in producer_options for a in argv[3:] if a.startswith("--"))
            seen.add("producer")
    assert {"topics", "worker", "tail", "producer"} <= seen
    assert "--replicas-override 1" in section() and "make k8s" in section()


def test_no_test_fixture_claims_a_name_of_the_walk_through() -> None:
    """A user adding the walk-through's topics must not break a framework test that used one of
    them as its example of an uncatalogued topic (issue 14)."""
    names = set(re.findall(r"pit\.v[0-9]+\.[a-z]+\.[a-z0-9_]+", section()))
    assert "pit.v1.risk.exposure_snapshot" in names and "pit.v1.runtime.exposure_changelog" in names
    new = names - set(re.findall(r"pit\.v[0-9]+\.[a-z]+\.[a-z0-9_]+", (ROOT / "infra" / "topics.yaml").read_text()))
    assert new
    me = {Path(__file__).resolve()}
    offenders = [f"{path.relative_to(ROOT)}: {name}" for path in (ROOT / "tests").rglob("*.py")
                 if path.resolve() not in me for name in new if name in path.read_text()]
    assert offenders == []
