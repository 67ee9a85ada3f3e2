"""Which handler failures are programming errors, and what they say.

Programming errors (an emit to an undeclared topic, the wrong message type for an output, a
non-integer into state, ``TypeError``, ``AttributeError``, ``NameError``, protobuf's "has no
field") are usually a bug, but each may be caused by one tenant's data (``LIMITS.get(instrument)``
is ``None`` for an instrument nobody expected), so they take the data path until records of two
tenants fail at the same code site (``runtime/suspects.py``); then the partition stops and
``/healthz`` names the error. Everything else is a data error: retry, then dead-letter
(docs/adr/0010-programming-errors.md).
"""

from __future__ import annotations

import ast
import dis
import linecache
import os
import types
from typing import Any

import google.protobuf
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

import pit_streams
from pit_streams.errors import EmitDeclarationError, StateTypeError

PROGRAMMING_ERROR = "programming error in a handler (it fails for every record; fix the code and restart)"
_NO_FIELD = "Protocol message "  # protobuf's "Protocol message X has no "y" field."
# Frames in these trees are the framework's or protobuf's, never the handler's code site.
_FRAMEWORK_DIRS = tuple(
    os.path.dirname(os.path.abspath(m.__file__ or "")) + os.sep for m in (pit_streams, google.protobuf)
)
_PLAIN_VALUES = (int, float, str, bytes, bool, type(None))  # their repr and protobuf's checks run no user code
_STORE_ATTR = dis.opmap["STORE_ATTR"]


def is_suspected_programming_error(exc: BaseException) -> bool:
    """True for failures that are usually a bug but may come from one record's data."""
    if isinstance(exc, TypeError | AttributeError | NameError | EmitDeclarationError | StateTypeError):
        return True
    return isinstance(exc, ValueError) and str(exc).startswith(_NO_FIELD)


def code_site(exc: BaseException) -> str:
    """``file:line`` of the innermost frame of handler code (not the framework's, not protobuf's)."""
    site = ""
    tb = exc.__traceback__
    while tb is not None:
        filename = os.path.abspath(tb.tb_frame.f_code.co_filename)
        if not filename.startswith(_FRAMEWORK_DIRS):
            site = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    return site or "<unknown>"


def describe(exc: BaseException) -> str:
    """``Type: message``, naming the protobuf message type and field when a field assignment failed.

    Never raises and runs no user code: it only reads source text, names and plain values.
    """
    try:
        text = f"{type(exc).__name__}: {exc}"
    except Exception:
        return type(exc).__name__
    if isinstance(exc, TypeError | ValueError):
        try:
            where = _field_of(exc)
        except Exception:
            where = ""
        if where:
            return f"{text} ({where})"
    return text


def _innermost(exc: BaseException) -> tuple[types.FrameType, ast.AST, bool] | None:
    """The innermost frame, its failing expression parsed, and whether that was an attribute store."""
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
    # co_positions columns are UTF-8 byte offsets, not character indexes.
    head, *middle = (line.encode("utf-8") for line in lines)
    raw = head[col:end_col] if start == end else head[col:] + b"".join(middle[:-1]) + middle[-1][:end_col]
    storing = frame.f_code.co_code[tb.tb_lasti] == _STORE_ATTR
    try:
        return frame, ast.parse(raw.decode("utf-8", "replace").strip(), mode="exec"), storing
    except SyntaxError:
        return None


def _field_of(exc: BaseException) -> str:
    found = _innermost(exc)
    if found is None:
        return ""
    frame, tree, storing = found
    scope: dict[str, Any] = {**frame.f_globals, **frame.f_locals}
    if storing:  # `msg.field = value`: the failing expression is the assignment target
        body = tree.body if isinstance(tree, ast.Module) else []
        target = body[0].value if len(body) == 1 and isinstance(body[0], ast.Expr) else None
        if isinstance(target, ast.Attribute):
            owner = _safe_eval(target.value, scope, _MISSING)
            if isinstance(owner, Message) and target.attr in owner.DESCRIPTOR.fields_by_name:
                return _field_text(type(owner), target.attr)
        return ""
    for node in ast.walk(tree):  # `Type(field=value, ...)`: one of the keywords failed
        if isinstance(node, ast.Call):
            cls = _safe_eval(node.func, scope)
            if isinstance(cls, type) and issubclass(cls, Message):
                return _failing_keyword(cls, node, scope)
    return ""


def _failing_keyword(cls: type[Message], call: ast.Call, scope: dict[str, Any]) -> str:
    names = [kw.arg for kw in call.keywords if kw.arg is not None]
    for kw in call.keywords:
        if kw.arg is None:
            continue
        value = _safe_eval(kw.value, scope, missing=_MISSING)
        if type(value) not in _PLAIN_VALUES:  # missing, or an object whose conversion could run code
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
