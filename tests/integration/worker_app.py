"""``pit-streams worker -A tests.integration.worker_app``: the integration app for worker subprocesses.

Its name and topics come from the environment (each test has its own), so the CLI runs the
very app an in-process test would build with ``itapp.make_app``.
"""

from __future__ import annotations

import os

from tests.integration.itapp import make_app

pit = make_app(
    os.environ["PIT_IT_APP"],
    os.environ["PIT_IT_SOURCE"],
    os.environ["PIT_IT_OUTPUT"],
    work_s=float(os.environ.get("PIT_IT_WORK_S", "0")),
)
