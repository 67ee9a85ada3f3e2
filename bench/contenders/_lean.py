"""Import ``pit_streams.contract`` without running ``pit_streams/__init__.py``.

The hand-written loops, faust and Quix use only the pure contract functions. Importing the
``pit_streams`` package would pull in the whole framework (and its dependencies, which the Quix
virtualenv does not have) and inflate the raw loops' RSS with code they never run. Importing
this module first registers ``pit_streams`` as a bare package, so ``pit_streams.contract`` loads
on its own. Contender processes only: never import it where the real runtime is used.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

if "pit_streams" not in sys.modules:
    _pkg = types.ModuleType("pit_streams")
    _pkg.__path__ = [str(Path(__file__).resolve().parents[2] / "pit_streams")]
    sys.modules["pit_streams"] = _pkg
