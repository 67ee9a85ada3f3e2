"""Typed handlers: a handler whose parameters do not accept ``(declared payload class, Context)`` is
refused twice — by ``mypy --strict`` (the decorator is generic in the payload class and pit-proto
messages have real stubs in the venv) and, for modules nobody type-checks, by a
``DeclarationError`` when the module is imported (docs/adr/0006-typed-handlers.md)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest
from google.protobuf.message import Message
from pit.events.v1.events_pb2 import NAVUpdateEvent, TradeFillEvent

import pit_streams
from pit_streams.errors import DeclarationError

if TYPE_CHECKING:
    from pit_streams.context import Context as OnlyWhenTypeChecking

REPO = Path(__file__).resolve().parents[2]
FILLS = "pit.v1.exec.trade_fill"
NAV = "pit.v1.acct.nav_update"

_HEADER = """\
from __future__ import annotations

from pit.events.v1.events_pb2 import NAVUpdateEvent, TradeFillEvent

import pit_streams

app = pit_streams.App("typed-app")
"""

# The mistakes the issue names: the NAV class where a fill arrives, and a context that is not one.
MISMATCHED = _HEADER + """

@app.handler("pit.v1.exec.trade_fill", TradeFillEvent, emits={"pit.v1.acct.nav_update": NAVUpdateEvent})
def on_fill(fill: NAVUpdateEvent, ctx: pit_streams.Context) -> None:
    ctx.emit("pit.v1.acct.nav_update", NAVUpdateEvent(nav_usd_micros=fill.nav_usd_micros))
"""

BAD_CONTEXT = _HEADER + """

@app.handler("pit.v1.acct.nav_update", NAVUpdateEvent)
async def on_nav(nav: NAVUpdateEvent, ctx: int) -> None:
    print(nav.nav_usd_micros + ctx)
"""

MATCHING = _HEADER + """

@app.handler("pit.v1.exec.trade_fill", TradeFillEvent, emits={"pit.v1.acct.nav_update": NAVUpdateEvent})
def on_fill(fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
    ctx.emit("pit.v1.acct.nav_update", NAVUpdateEvent(nav_usd_micros=fill.notional_usd_micros))


@app.handler("pit.v1.acct.nav_update", NAVUpdateEvent)
async def on_nav(nav: NAVUpdateEvent, ctx: pit_streams.Context) -> None:
    print(ctx.key, nav.nav_usd_micros)
"""

MODULES = {"mismatched_app": MISMATCHED, "bad_context_app": BAD_CONTEXT, "matching_app": MATCHING}


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("typed_apps")
    for name, text in MODULES.items():
        (root / f"{name}.py").write_text(text)
    return root


@pytest.fixture(scope="module")
def mypy_errors(app_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """``mypy --strict`` with the repo's configuration over all three modules in one run
    (one cold cache, ~3 s): ``{module: [its error lines]}``."""
    cache = tmp_path_factory.mktemp("mypy_cache")
    files = [str(app_dir / f"{name}.py") for name in MODULES]
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--config-file", str(REPO / "pyproject.toml"),
         "--cache-dir", str(cache), "--no-color-output", "--no-error-summary", *files],
        cwd=REPO, capture_output=True, text=True, timeout=240, check=False,
    )
    assert done.returncode in (0, 1), f"mypy crashed ({done.returncode}):\n{done.stdout}{done.stderr}"
    errors: dict[str, list[str]] = {name: [] for name in MODULES}
    for line in done.stdout.splitlines():
        if ": note: " in line:
            continue
        match = re.match(r"^(.*?)\.py:\d+: error: ", line)
        assert match, f"mypy reported outside the test's modules: {line}"
        errors[Path(match.group(1)).name].append(line)
    return errors


def _import(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"typed_handlers_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mypy_rejects_a_handler_annotated_with_another_payload_class(mypy_errors: dict[str, list[str]]) -> None:
    (error,) = mypy_errors["mismatched_app"]
    assert '"Callable[[NAVUpdateEvent, Context], None]"' in error
    assert 'expected "Callable[[TradeFillEvent, Context], None]"' in error
    assert error.endswith("[arg-type]")


def test_mypy_rejects_a_context_parameter_that_is_not_a_context(mypy_errors: dict[str, list[str]]) -> None:
    (error,) = mypy_errors["bad_context_app"]
    assert '"Callable[[NAVUpdateEvent, int], Coroutine[Any, Any, None]]"' in error
    assert 'expected "Callable[[NAVUpdateEvent, Context], Coroutine[Any, Any, None]]"' in error


def test_mypy_accepts_matching_handlers_sync_and_async(mypy_errors: dict[str, list[str]]) -> None:
    # The stubs are real: fill.notional_usd_micros and nav.nav_usd_micros type-check as ints
    # (a misspelt field would be an error here, not Any).
    assert mypy_errors["matching_app"] == []


def test_import_of_the_mismatched_module_raises_naming_handler_and_both_types(app_dir: Path) -> None:
    with pytest.raises(DeclarationError) as exc:
        _import(app_dir / "mismatched_app.py")
    text = str(exc.value)
    assert "on_fill" in text
    assert FILLS in text
    assert "payload parameter 'fill' is annotated pit.events.v1.events_pb2.NAVUpdateEvent" in text
    assert "is declared for pit.events.v1.events_pb2.TradeFillEvent" in text


def test_import_of_a_module_whose_context_is_not_a_context_raises(app_dir: Path) -> None:
    with pytest.raises(DeclarationError, match=r"on_nav .*context parameter 'ctx' is annotated int.*Context"):
        _import(app_dir / "bad_context_app.py")


def test_import_of_the_matching_module_registers_both_handlers(app_dir: Path) -> None:
    module = _import(app_dir / "matching_app.py")
    app: pit_streams.App = module.app
    assert app.reads() == [NAV, FILLS]
    assert app.handlers[FILLS].payload_class is TradeFillEvent


def _app() -> pit_streams.App:
    return pit_streams.App("typed-unit")


def test_unannotated_supertype_any_and_optional_parameters_are_accepted() -> None:
    app = _app()

    @app.handler(FILLS, TradeFillEvent)
    def untyped(fill, ctx):
        pass

    @app.handler(NAV, NAVUpdateEvent)
    def wide(nav: Message, ctx: object) -> None:
        pass

    @app.handler("pit.v1.exec.order", TradeFillEvent)
    def loose(fill: Any, ctx: TradeFillEvent | pit_streams.Context | None) -> None:
        pass

    assert app.reads() == [NAV, "pit.v1.exec.order", FILLS]


def test_a_sibling_message_class_or_a_union_without_the_declared_class_is_refused() -> None:
    app = _app()
    with pytest.raises(DeclarationError, match=r"payload parameter 'fill' is annotated .*NAVUpdateEvent \| None"):

        @app.handler(FILLS, TradeFillEvent)
        def on_fill(fill: NAVUpdateEvent | None, ctx: pit_streams.Context) -> None:
            pass

    with pytest.raises(DeclarationError, match=r"payload parameter 'fill' is annotated .*list\[int\]"):

        @app.handler(FILLS, TradeFillEvent)
        def on_list(fill: list[int], ctx: pit_streams.Context) -> None:
            pass

    assert app.reads() == []  # nothing half-registered


def test_a_name_imported_only_for_type_checking_leaves_that_parameter_to_mypy() -> None:
    # OnlyWhenTypeChecking does not exist at run time: the context cannot be resolved (mypy,
    # which sees it, has judged it), but the payload annotation still is.
    app = _app()

    @app.handler(FILLS, TradeFillEvent)
    def fine(fill: TradeFillEvent, ctx: OnlyWhenTypeChecking) -> None:
        pass

    with pytest.raises(DeclarationError, match=r"annotated pit\.events\.v1\.events_pb2\.NAVUpdateEvent"):

        @app.handler(NAV, TradeFillEvent)
        def wrong(fill: NAVUpdateEvent, ctx: OnlyWhenTypeChecking) -> None:
            pass


def test_methods_and_callable_objects_are_checked_too() -> None:
    class Handlers:
        def on_fill(self, fill: TradeFillEvent, ctx: pit_streams.Context) -> None:
            pass

        def on_nav(self, nav: TradeFillEvent, ctx: pit_streams.Context) -> None:
            pass

    class Handler:
        def __call__(self, nav: TradeFillEvent, ctx: pit_streams.Context) -> None:
            pass

    app = _app()
    app.handler(FILLS, TradeFillEvent)(Handlers().on_fill)
    with pytest.raises(DeclarationError, match=r"Handlers\.on_nav for pit\.v1\.acct\.nav_update"):
        app.handler(NAV, NAVUpdateEvent)(Handlers().on_nav)
    with pytest.raises(DeclarationError, match=r"annotated pit\.events\.v1\.events_pb2\.TradeFillEvent"):
        app.handler(NAV, NAVUpdateEvent)(Handler())


def test_a_handler_must_take_exactly_payload_and_context() -> None:
    app = _app()
    with pytest.raises(DeclarationError, match="exactly two positional parameters"):
        app.handler(FILLS, TradeFillEvent)(lambda fill: None)
    with pytest.raises(DeclarationError, match="exactly two positional parameters"):

        @app.handler(FILLS, TradeFillEvent)
        def keyword_only(fill: TradeFillEvent, *, ctx: pit_streams.Context) -> None:
            pass


def test_the_venv_has_current_pit_proto_stubs() -> None:
    # The mypy tests above stand on the stubs `make venv` generates from the installed wheel; a
    # stale set (a pit-proto upgraded by hand) would type messages that no longer exist.
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "proto_stubs.py"), "--check"],
                          cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
