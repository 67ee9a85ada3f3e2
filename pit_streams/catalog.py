"""PLACEHOLDER — being replaced by the catalog module (issue 4)."""

from __future__ import annotations

from pit_streams.app import App


def check_app_against_catalog(app: App, path: str | None) -> None:
    return None
