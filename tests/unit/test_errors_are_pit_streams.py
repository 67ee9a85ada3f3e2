"""Issue 11: every error the library raises is a ``PitStreamsError``, so one ``except`` catches them all.

Scans the source: each ``raise Name(...)`` of a class, and each exception class the library
defines, must be a ``PitStreamsError`` unless listed below with the reason Python demands it.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
from pathlib import Path

import pytest

import pit_streams
from pit_streams.errors import PitStreamsError

PACKAGE = Path(pit_streams.__file__).resolve().parent

# (module, exception name) -> why it may stay outside PitStreamsError.
ALLOWED = {
    ("pit_streams.cli.worker", "argparse.ArgumentTypeError"):
        "argparse's contract for type= converters: it becomes a usage message and exit 2",
    ("pit_streams.tools.deadletters", "argparse.ArgumentTypeError"):
        "the --since type= converter, the same argparse contract",
    ("pit_streams.transport.aiokafka_records", "CorruptRecordException"):
        "raised inside aiokafka's fetcher for a corrupt batch, as aiokafka's own parser does; poll"
        " turns it (a KafkaError) into a TransportError",
}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__main__":
            continue
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out.append((name, path))
    return out


def _raised_names(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name | ast.Attribute):
                names.add(ast.unparse(exc))
    return names


def _resolve(module: object, dotted: str) -> object:
    head, *rest = dotted.split(".")
    value = getattr(module, head, None)
    if value is None:
        value = getattr(builtins, head, None)
    for part in rest:
        value = getattr(value, part, None)
    return value


def offenders() -> list[str]:
    found = []
    for name, path in _modules():
        module = importlib.import_module(name)
        for raised in sorted(_raised_names(ast.parse(path.read_text(encoding="utf-8")))):
            value = _resolve(module, raised)
            # Not a class: a helper that builds the error (checked where it is defined) or a variable.
            if inspect.isclass(value) and not issubclass(value, PitStreamsError) and (name, raised) not in ALLOWED:
                found.append(f"{path.relative_to(PACKAGE.parent)}: raise {raised}")
        for attr, value in vars(module).items():
            if (inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == name
                    and not issubclass(value, PitStreamsError) and (name, attr) not in ALLOWED):
                found.append(f"{path.relative_to(PACKAGE.parent)}: class {attr} is not a PitStreamsError")
    return found


def test_every_raised_error_is_a_pit_streams_error() -> None:
    assert offenders() == []


def test_the_scan_sees_a_builtin_raise() -> None:
    """Without this the test above could pass by finding nothing."""
    tree = ast.parse("def f():\n    raise ValueError('x')\n\ndef g():\n    raise argparse.ArgumentTypeError\n")
    assert _raised_names(tree) == {"ValueError", "argparse.ArgumentTypeError"}
    assert _resolve(object(), "ValueError") is ValueError


@pytest.mark.parametrize("builtin", [ValueError, AssertionError])
def test_subclasses_keep_the_builtin_callers_catch(builtin: type[Exception]) -> None:
    from pit_streams.errors import ContractError, InvariantError, StateValueError

    classes = {ValueError: (ContractError, StateValueError), AssertionError: (InvariantError,)}[builtin]
    assert all(issubclass(c, builtin) and issubclass(c, PitStreamsError) for c in classes)
