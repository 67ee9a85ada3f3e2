"""The chaos workload: ``apps.nav`` under the scenario's own consumer group.

    PIT_CHAOS_GROUP=chaos-kill-1a2b3c python -m pit_streams.cli worker -A bench.chaos.app:pit ...

``apps.nav.build_app(name)`` gives the very NAV handler under another group (and so another
changelog topic), which isolates scenarios sharing a broker.
"""

from __future__ import annotations

import os

from apps.nav import build_app

GROUP_ENV = "PIT_CHAOS_GROUP"

pit = build_app(os.environ.get(GROUP_ENV) or "chaos-nav")
