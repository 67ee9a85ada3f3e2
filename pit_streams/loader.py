"""Find the declarations of handler modules named on the command line (``-A apps.nav[:attr]``).

The one module loader: the worker (an ``App``), ``acl``, ``k8s`` and ``topics check`` (an ``App``
or a ``ProducerSpec``) all import modules through ``import_module``, so they fail the same way.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from pit_streams.acl import ProducerSpec
from pit_streams.app import App
from pit_streams.errors import ConfigError

__all__ = ["Declared", "discover_declared", "import_module", "load_app", "load_declared", "resolve_declared"]


def _where(exc: BaseException) -> str:
    """``file:line`` of the innermost frame outside importlib's machinery."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<frozen")]
    if not frames:
        return "<unknown>"
    return f"{frames[-1].filename}:{frames[-1].lineno}"


def import_module(module_name: str) -> ModuleType:
    """Import ``module_name`` from the working directory; ``ConfigError`` naming the fix if it fails."""
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(module_name)
    except SyntaxError as exc:
        raise ConfigError(f"{exc.filename}:{exc.lineno}: {exc.msg}") from None
    except ImportError as exc:
        missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
        if missing is not None and (module_name == missing or module_name.startswith(missing + ".")):
            raise ConfigError(
                f"cannot import app module {module_name!r} ({exc}): pass -A package.module, run from the"
                " directory that contains it"
            ) from None
        # The app module was found but an import inside it failed: say where.
        raise ConfigError(f"{_where(exc)}: {type(exc).__name__}: {exc}") from None


def load_app(spec: str) -> App:
    """The one ``App`` of ``apps.nav``, or ``apps.nav:attr``."""
    module_name, _, attr = spec.partition(":")
    module = import_module(module_name)
    if attr:
        app = getattr(module, attr, None)
        if not isinstance(app, App):
            raise ConfigError(f"{module_name}:{attr} is not a pit_streams.App")
        return app
    apps = [v for v in vars(module).values() if isinstance(v, App)]
    if len(apps) != 1:
        found = "none" if not apps else ", ".join(a.name for a in apps)
        raise ConfigError(
            f"{module_name} must define exactly one pit_streams.App (found {found}): name it with -A {module_name}:attr"
        )
    return apps[0]


@dataclass(frozen=True)
class Declared:
    """An ``App`` or ``ProducerSpec`` and the ``-A`` spec that loads it (``apps.nav``, ``apps.x:attr``)."""

    spec: str
    target: App | ProducerSpec

    @property
    def name(self) -> str:
        return self.target.name


def load_declared(spec: str) -> Declared:
    """``apps.nav`` (its one ``App`` or ``ProducerSpec``) or ``apps.nav:attr``."""
    module_name, _, attr = spec.partition(":")
    module = import_module(module_name)
    if attr:
        target = getattr(module, attr, None)
        if not isinstance(target, App | ProducerSpec):
            raise ConfigError(f"{spec} is neither a pit_streams.App nor a ProducerSpec")
        return Declared(spec, target)
    found = [v for v in vars(module).values() if isinstance(v, App | ProducerSpec)]
    if len(found) != 1:
        names = ", ".join(v.name for v in found) or "none"
        raise ConfigError(
            f"{module_name} must define exactly one pit_streams.App or ProducerSpec (found {names}):"
            f" name one with -A {module_name}:attr"
        )
    return Declared(module_name, found[0])


def discover_declared(apps_dir: Path = Path("apps")) -> list[Declared]:
    """Every ``App`` and ``ProducerSpec`` defined in ``apps_dir/*.py`` (imported as ``apps.<stem>``),
    by name. An ``App`` counts in the module that defines its handlers, not one that imports it."""
    package = apps_dir.name
    found: dict[str, Declared] = {}
    for file in sorted(apps_dir.glob("*.py")):
        if file.stem.startswith("_"):
            continue
        module_name = f"{package}.{file.stem}"
        module = import_module(module_name)
        owned = [(attr, v) for attr, v in vars(module).items() if _defined_in(v, module_name)]
        for attr, target in owned:
            spec = module_name if len(owned) == 1 else f"{module_name}:{attr}"
            previous = found.get(target.name)
            if previous is not None and previous.target is not target:
                raise ConfigError(f"two declarations named {target.name!r}: {previous.spec} and {spec}")
            found.setdefault(target.name, Declared(spec, target))
    return [found[name] for name in sorted(found)]


def _defined_in(value: object, module_name: str) -> bool:
    if isinstance(value, App):
        return any(h.fn.__module__ == module_name for h in value.handlers.values())
    return isinstance(value, ProducerSpec)


def resolve_declared(specs: Iterable[str] | None, apps_dir: Path = Path("apps")) -> list[Declared]:
    """The ``-A`` specs given, or else everything in ``apps/``."""
    chosen = list(specs or [])
    if chosen:
        return sorted((load_declared(s) for s in chosen), key=lambda d: d.name)
    if not apps_dir.is_dir():
        raise ConfigError(f"no {apps_dir}/ directory here (cwd {Path.cwd()}): run from the repository root or pass -A")
    return discover_declared(apps_dir)
