"""The chaos workload: ``apps.nav`` under the scenario's own consumer group.

    PIT_CHAOS_GROUP=chaos-kill-1a2b3c python -m pit_streams.cli worker -A bench.chaos.app:pit ...

``apps.nav.build_app(name)`` gives the very NAV handler under another group (and so another
changelog topic), which isolates scenarios sharing a broker. ``PIT_CHAOS_DEDUPE_TTL_S`` (seconds,
may be fractional) shortens the dedupe TTL so that marks expire within a run (``longrun``).
"""

from __future__ import annotations

import os
from datetime import timedelta

from apps.nav import DEDUPE_TTL, build_app

GROUP_ENV = "PIT_CHAOS_GROUP"
TTL_ENV = "PIT_CHAOS_DEDUPE_TTL_S"

_ttl = os.environ.get(TTL_ENV)
pit = build_app(os.environ.get(GROUP_ENV) or "chaos-nav",
                dedupe_ttl=timedelta(seconds=float(_ttl)) if _ttl else DEDUPE_TTL)  # fmt: skip
