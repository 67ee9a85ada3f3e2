"""Errors users see. Each message names the fix."""

from __future__ import annotations


class PitStreamsError(Exception):
    """Base of every pit-streams error."""


class DeclarationError(PitStreamsError):
    """An app declares something the framework or the contract cannot accept."""


class EmitError(PitStreamsError):
    """A handler emitted something the contract forbids (undeclared topic, wrong type, foreign tenant)."""


class ConfigError(PitStreamsError):
    """Bad configuration or command-line argument."""


class EmitDeclarationError(EmitError):
    """An emit that contradicts the handler's declaration (undeclared topic, wrong message type):
    the same code fails on every record, so the runtime stops the partition instead of
    dead-lettering each one."""
