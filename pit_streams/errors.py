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
