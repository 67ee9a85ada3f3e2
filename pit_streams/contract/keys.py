"""The canonical key grammar (contract 1.3), as pure functions.

    t/{tenant}/s/{series}/c/{cell}   cell-scoped
    t/{tenant}/s/{series}            series-scoped
    venue/{venue}                    ops/health domains only
"""

from __future__ import annotations

from dataclasses import dataclass

from pit_streams.contract.reasons import Reason, Rejection


@dataclass(frozen=True, slots=True)
class Key:
    """A parsed canonical key. ``venue`` is set only for ``venue/{venue}`` keys."""

    tenant: str = ""
    series: str = ""
    cell: str = ""
    venue: str = ""

    def __str__(self) -> str:
        if self.venue:
            return f"venue/{self.venue}"
        if self.cell:
            return f"t/{self.tenant}/s/{self.series}/c/{self.cell}"
        return f"t/{self.tenant}/s/{self.series}"


def _segment_ok(segment: str) -> bool:
    return bool(segment) and not segment.isspace() and segment.strip() == segment


def parse_key(text: str, *, allow_venue: bool = False) -> Key | Rejection:
    """Parse ``text`` as a canonical key, or say why it is not one.

    >>> parse_key("t/demo/s/alpha/c/0001")
    Key(tenant='demo', series='alpha', cell='0001', venue='')
    """
    parts = text.split("/")
    if len(parts) == 6 and parts[0] == "t" and parts[2] == "s" and parts[4] == "c":
        tenant, series, cell = parts[1], parts[3], parts[5]
        if _segment_ok(tenant) and _segment_ok(series) and _segment_ok(cell):
            return Key(tenant, series, cell)
    elif len(parts) == 4 and parts[0] == "t" and parts[2] == "s":
        tenant, series = parts[1], parts[3]
        if _segment_ok(tenant) and _segment_ok(series):
            return Key(tenant, series)
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
