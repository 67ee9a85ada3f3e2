"""``python -m pit_streams.cli``: the same as the ``pit-streams`` entry point."""

import sys

from pit_streams.cli import main

sys.exit(main())
