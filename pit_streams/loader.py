"""Find the ``App`` of a handler module named on the command line (``-A apps.nav[:attr]``)."""

from __future__ import annotations

import importlib
import sys
import traceback
from pathlib import Path

from pit_streams.app import App
from pit_streams.errors import ConfigError


def _where(exc: BaseException) -> str:
    """``file:line`` of the innermost frame outside importlib's machinery."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<frozen")]
    if not frames:
        return "<unknown>"
    return f"{frames[-1].filename}:{frames[-1].lineno}"


def load_app(spec: str) -> App:
    module_name, _, attr = spec.partition(":")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
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
