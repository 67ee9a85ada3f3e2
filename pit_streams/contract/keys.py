"""The canonical key grammar (contract 1.3), as pure functions.

    t/{tenant}/s/{series}/c/{cell}   cell-scoped
    t/{tenant}/s/{series}            series-scoped
    venue/{venue}                    ops/health domains only
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

from pit_streams.contract.reasons import Reason, Rejection

# Keys repeat (a cell emits many events), so parses are remembered; bounded so a stream of
# hostile unique keys cannot grow it without limit.
_CACHE_LIMIT = 65_536
# A key is copied into every output, the changelog key and the dead letter; bounded so one
# record cannot make records the broker refuses.
MAX_KEY_CHARS = 512
_INVISIBLE = ("Cc", "Cf")
_cache: dict[tuple[str, bool], Key | Rejection] = {}


@dataclass(frozen=True, slots=True)
class Key:
    """A parsed canonical key. ``venue`` is set only for ``venue/{venue}`` keys."""

    tenant: str = ""
    series: str = ""
    cell: str = ""
    venue: str = ""
    text: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.text:
            if self.venue:
                text = f"venue/{self.venue}"
            elif self.cell:
                text = f"t/{self.tenant}/s/{self.series}/c/{self.cell}"
            else:
                text = f"t/{self.tenant}/s/{self.series}"
            object.__setattr__(self, "text", text)

    def __str__(self) -> str:
        return self.text


def clean_text(text: str) -> bool:
    """No control (Cc: NUL, newline, ...) or format (Cf: bidi overrides, zero-width) characters.

    Such characters make one key print like another in logs and tools, or end a line early.
    """
    if text.isascii():
        return text.isprintable()  # for ASCII, "not printable" is exactly category Cc
    return not any(unicodedata.category(ch) in _INVISIBLE for ch in text)


def _segment_ok(segment: str) -> bool:
    return bool(segment) and not segment.isspace() and segment.strip() == segment


def parse_key(text: str, *, allow_venue: bool = False) -> Key | Rejection:
    """Parse ``text`` as a canonical key, or say why it is not one.

    >>> parse_key("t/demo/s/alpha/c/0001")
    Key(tenant='demo', series='alpha', cell='0001', venue='')
    """
    cached = _cache.get((text, allow_venue))
    if cached is None:
        if len(_cache) >= _CACHE_LIMIT:
            _cache.clear()
        cached = _cache[(text, allow_venue)] = _parse(text, allow_venue)
    return cached


def _parse(text: str, allow_venue: bool) -> Key | Rejection:
    if len(text) > MAX_KEY_CHARS:
        return Rejection(Reason.FIELD_TOO_LONG, f"key has {len(text)} characters, more than {MAX_KEY_CHARS}")
    if not clean_text(text):
        return Rejection(
            Reason.BAD_CHARACTERS,
            f"key {text!r} contains control or format characters (NUL, newline, bidi overrides):"
            " keys are printable text",
        )
    parts = text.split("/")
    if len(parts) == 6 and parts[0] == "t" and parts[2] == "s" and parts[4] == "c":
        tenant, series, cell = parts[1], parts[3], parts[5]
        if _segment_ok(tenant) and _segment_ok(series) and _segment_ok(cell):
            return Key(tenant, series, cell, text=text)
    elif len(parts) == 4 and parts[0] == "t" and parts[2] == "s":
        tenant, series = parts[1], parts[3]
        if _segment_ok(tenant) and _segment_ok(series):
            return Key(tenant, series, text=text)
    elif len(parts) == 2 and parts[0] == "venue" and _segment_ok(parts[1]):
        if allow_venue:
            return Key(venue=parts[1])
        return Rejection(Reason.KEY_INVALID, f"venue key {text!r} is allowed only on ops topics")
    return Rejection(
        Reason.KEY_INVALID,
        f"key {text!r} is not canonical: expected t/{{tenant}}/s/{{series}}[/c/{{cell}}]"
        " with non-empty segments free of '/'",
    )


def key_of(tenant: str, series: str, cell: str = "") -> Key | Rejection:
    """Build the canonical key for the given fields, validating each segment."""
    text = f"t/{tenant}/s/{series}/c/{cell}" if cell else f"t/{tenant}/s/{series}"
    return parse_key(text)
