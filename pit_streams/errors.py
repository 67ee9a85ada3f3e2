"""Errors users see. Each message names the fix.

Every error the library raises is a ``PitStreamsError``, so one ``except`` catches them all.
Where callers already catch a built-in class (``ValueError``), the subclass keeps that base too.
"""

from __future__ import annotations


class PitStreamsError(Exception):
    """Base of every pit-streams error."""


class DeclarationError(PitStreamsError):
    """An app declares something the framework or the contract cannot accept."""


class EmitError(PitStreamsError):
    """A handler emitted something the contract forbids (undeclared topic, wrong type, foreign tenant)."""


class ConfigError(PitStreamsError):
    """Bad configuration or command-line argument."""


class ContractError(PitStreamsError, ValueError):
    """Data or an argument breaks a platform contract rule (not an envelope, no partitions...)."""


class StateValueError(PitStreamsError, ValueError):
    """A handler put something keyed state cannot hold: a non-integer, beyond int64, a bad name."""


class StateTypeError(StateValueError):
    """A handler put a non-integer into keyed state: usually the code's fault, but the value may
    come from the data (``LIMITS.get(instrument)``), so the partition stops only once two tenants'
    records fail at the same code site (a value beyond int64 is a plain ``StateValueError``)."""


class InvariantError(PitStreamsError, AssertionError):
    """The framework caught itself about to break one of its own guarantees: a bug, never user error."""


class EmitDeclarationError(EmitError):
    """An emit that contradicts the handler's declaration (undeclared topic, wrong message type):
    usually the same code fails on every record, but the topic or type may be picked from the data,
    so the partition stops once two tenants' records fail at the same code site."""
