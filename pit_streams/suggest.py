"""\"Did you mean\" for names close to a known one: a typo gets the right name, not a fix for the typo."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(name: str, known: Iterable[str]) -> str | None:
    """The known name most like ``name`` (a typo, a plural), or None when nothing is close."""
    matches = difflib.get_close_matches(name, list(known), n=1, cutoff=0.85)
    return matches[0] if matches and matches[0] != name else None


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``" (did you mean X?)"`` for a close known name, else ``""``: ready to append to a message."""
    match = closest(name, known)
    return f" (did you mean {match}?)" if match else ""
