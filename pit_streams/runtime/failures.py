"""Which handler failures are programming errors, and what they say.

A programming error fails for every record (an emit to an undeclared topic, the wrong message
type for an output, a float into an int64 field, an attribute the payload type does not have):
retrying and dead-lettering would bury the bug under a dead letter per record while health
stays green, so the partition stops and ``/healthz`` names the error instead. Everything else is
a data error and keeps the retry-then-dead-letter path (docs/adr/0010-programming-errors.md).
"""

from __future__ import annotations

import ast
import linecache
import types
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from pit_streams.errors import EmitDeclarationError, StateValueError

PROGRAMMING_ERROR = "programming error in a handler (it fails for every record; fix the code and restart)"
_NO_FIELD = "Protocol message "  # protobuf's "Protocol message X has no "y" field."


def is_programming_error(exc: BaseException) -> bool:
    """True for failures the same code will raise on every record, whatever the data."""
    if isinstance(exc, EmitDeclarationError | TypeError | AttributeError | NameError):
        return True
    if isinstance(exc, StateValueError):  # a float into state, always; a too-large value may be the data's
        return "holds integers" in str(exc)
    return isinstance(exc, ValueError) and str(exc).startswith(_NO_FIELD)


def describe(exc: BaseException) -> str:
    """``Type: message``, naming the protobuf message type and field when a field assignment failed."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, TypeError | ValueError):
        where = _field_of(exc)
        if where:
            return f"{text} ({where})"
    return text


def _innermost(exc: BaseException) -> tuple[types.FrameType, ast.AST] | None:
    tb = exc.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    frame = tb.tb_frame
    positions = list(frame.f_code.co_positions())
    index = tb.tb_lasti // 2
    if index >= len(positions):
        return None
    start, end, col, end_col = positions[index]
    if start is None or end is None or col is None or end_col is None:
        return None
    lines = [linecache.getline(frame.f_code.co_filename, n) for n in range(start, end + 1)]
    if not all(lines):
        return None
    head, *middle = lines
    segment = head[col:end_col] if start == end else head[col:] + "".join(middle[:-1]) + middle[-1][:end_col]
    try:
        return frame, ast.parse(segment.strip(), mode="exec")
    except SyntaxError:
        return None


def _field_of(exc: BaseException) -> str:
    found = _innermost(exc)
    if found is None:
        return ""
    frame, tree = found
    scope: dict[str, Any] = {**frame.f_globals, **frame.f_locals}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            cls = _safe_eval(node.func, scope)
            if isinstance(cls, type) and issubclass(cls, Message):
                return _failing_keyword(cls, node, scope)
        if isinstance(node, ast.Attribute):  # `msg.field = value`: the failing store is the target
            owner = _safe_eval(node.value, scope)
            if isinstance(owner, Message) and node.attr in owner.DESCRIPTOR.fields_by_name:
                return _field_text(type(owner), node.attr)
    return ""


def _failing_keyword(cls: type[Message], call: ast.Call, scope: dict[str, Any]) -> str:
    names = [kw.arg for kw in call.keywords if kw.arg is not None]
    for kw in call.keywords:
        if kw.arg is None:
            continue
        value = _safe_eval(kw.value, scope, missing=_MISSING)
        if value is _MISSING:
            continue
        try:
            cls(**{kw.arg: value})
        except (TypeError, ValueError):
            return _field_text(cls, kw.arg, value)
    if len(names) == 1:
        return _field_text(cls, names[0])
    return f"building {cls.DESCRIPTOR.full_name}, one of fields {', '.join(names)}" if names else ""


def _field_text(cls: type[Message], name: str, value: object = None) -> str:
    field = cls.DESCRIPTOR.fields_by_name.get(name)
    kind = _TYPE_NAMES.get(field.type, "") if field is not None else ""
    got = f" got {type(value).__name__} {value!r}" if value is not None else ""
    hint = "; money fields take integer micros" if kind in ("int64", "int32", "uint64", "uint32") else ""
    return f"field {cls.DESCRIPTOR.full_name}.{name}{f' ({kind})' if kind else ''}{got}{hint}"


_MISSING = object()


def _safe_eval(node: ast.expr, scope: dict[str, Any], missing: object = None) -> Any:
    """Look up a constant, a local or global name, or a dotted path through modules and classes.

    Nothing runs: no call, no operator, and no attribute of an instance (a property could run code).
    """
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return scope.get(node.id, missing)
    if isinstance(node, ast.Attribute):
        owner = _safe_eval(node.value, scope, _MISSING)
        if isinstance(owner, types.ModuleType | type):
            return getattr(owner, node.attr, missing)
    return missing


_TYPE_NAMES = {
    FieldDescriptor.TYPE_INT64: "int64", FieldDescriptor.TYPE_INT32: "int32", FieldDescriptor.TYPE_UINT64: "uint64",
    FieldDescriptor.TYPE_UINT32: "uint32", FieldDescriptor.TYPE_SINT64: "sint64", FieldDescriptor.TYPE_SINT32: "sint32",
    FieldDescriptor.TYPE_FIXED64: "fixed64", FieldDescriptor.TYPE_DOUBLE: "double", FieldDescriptor.TYPE_FLOAT: "float",
    FieldDescriptor.TYPE_BOOL: "bool", FieldDescriptor.TYPE_STRING: "string", FieldDescriptor.TYPE_BYTES: "bytes",
    FieldDescriptor.TYPE_ENUM: "enum", FieldDescriptor.TYPE_MESSAGE: "message",
}  # fmt: skip
