"""The import-time twin of the handler decorator's static typing.

``App.handler`` is generic in the payload class, so ``mypy --strict`` rejects a handler whose
parameters do not accept ``(payload_type, Context)``. Apps that are not type-checked get the same
answer as a ``DeclarationError`` when the module is imported, not as an ``AttributeError`` on the
first record in production. The rule is mypy's: a parameter annotated with the declared class or
any class it derives from (``Message``, ``object``) accepts it; unannotated parameters and
annotations that are not plain classes (``Any``, protocols, type variables) are left to mypy.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from typing import Any

from pit_streams.context import Context
from pit_streams.errors import DeclarationError


def check_handler_signature(fn: Callable[..., object], topic: str, payload_type: type) -> None:
    """Raise ``DeclarationError`` unless ``fn`` can be called as ``fn(payload, ctx)`` with a
    ``payload_type`` instance and a ``Context``."""
    name = getattr(fn, "__qualname__", repr(fn))
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        raise DeclarationError(f"handler {name} for {topic} must be a function taking (payload, ctx)") from None
    if len(params) != 2 or any(p.kind not in _POSITIONAL for p in params):
        raise DeclarationError(f"handler {name} for {topic} must take exactly two positional parameters (payload, ctx)")
    hints = _resolved_hints(fn)
    for param, expected, role in ((params[0], payload_type, "payload"), (params[1], Context, "context")):
        annotation = hints.get(param.name, inspect.Parameter.empty)
        if not _accepts(annotation, expected):
            raise DeclarationError(
                f"handler {name} for {topic}: its {role} parameter {param.name!r} is annotated"
                f" {_type_name(annotation)}, but the handler is declared for {_type_name(expected)}:"
                f" annotate it {expected.__name__} (or change the declared type)"
            )


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _resolved_hints(fn: Callable[..., object]) -> dict[str, object]:
    """The parameters' annotations with string annotations (``from __future__ import annotations``)
    resolved in the handler's module, the way mypy reads them."""
    target: Any = inspect.unwrap(fn)
    if not (inspect.isfunction(target) or inspect.ismethod(target)):
        target = type(target).__call__  # a callable object: its method
    try:
        return typing.get_type_hints(target)
    except Exception:
        # Typically a name imported only under TYPE_CHECKING (a type-checked app, so mypy has
        # already judged it): resolve what can be resolved, one parameter at a time.
        return _each_resolvable(target)


def _each_resolvable(target: Any) -> dict[str, object]:
    raw = getattr(target, "__annotations__", None)
    if not isinstance(raw, dict):
        return {}
    globalns = getattr(target, "__globals__", {})
    hints: dict[str, object] = {}
    for name, annotation in raw.items():
        if not isinstance(annotation, str):
            hints[name] = annotation
            continue
        try:
            hints[name] = typing.get_type_hints(_Holder(annotation), globalns)["value"]
        except Exception:
            continue  # unresolvable here: mypy checks it
    return hints


class _Holder:
    """An object whose only annotation is one string, so ``get_type_hints`` resolves just that."""

    def __init__(self, annotation: str) -> None:
        self.__annotations__ = {"value": annotation}


def _accepts(annotation: object, expected: type) -> bool:
    if annotation is inspect.Parameter.empty or annotation is Any or annotation is object:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return any(_accepts(member, expected) for member in typing.get_args(annotation))
    if annotation is None or annotation is type(None):
        return False
    if isinstance(origin, type):
        annotation = origin  # list[int], type[X], Callable[...]: their class decides
    if not isinstance(annotation, type) or getattr(annotation, "_is_protocol", False):
        return True  # a protocol, type variable, NewType, ...: structural, so mypy's call
    return issubclass(expected, annotation)


def _type_name(annotation: object) -> str:
    if annotation is None or annotation is type(None):
        return "None"
    if not isinstance(annotation, type):
        return repr(annotation)  # e.g. 'pit.events.v1.events_pb2.NAVUpdateEvent | None'
    if annotation.__module__ == "builtins":
        return annotation.__qualname__
    return f"{annotation.__module__}.{annotation.__qualname__}"
