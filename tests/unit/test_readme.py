"""The README's handler example runs, and agrees with apps.nav_math on the same fills."""

from __future__ import annotations

import re
import types
from pathlib import Path

from apps.nav_math import CellBook, MemoryState
from apps.tradefill_producer import generate_fills
from pit_streams.testing import TestHarness

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_module() -> types.ModuleType:
    section = README.read_text().split("## A handler in 20 lines", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    assert len(code.group(1).strip().splitlines()) <= 20
    module = types.ModuleType("readme_example")
    exec(compile(code.group(1), str(README), "exec"), module.__dict__)
    return module


async def test_readme_handler_matches_offline_nav(tmp_path: Path) -> None:
    example = readme_module()
    fills = generate_fills(300, tenants=["demo"], series=["alpha"], cells=1, seed=3)
    book_state = MemoryState()
    expected = [CellBook(book_state).apply(fill).nav for _, fill in fills]
    async with TestHarness(example.pit, data_dir=tmp_path) as h:
        for key, fill in fills:
            await h.send("pit.v1.exec.trade_fill", fill, key=key, run=False)
        await h.run()
        navs = [nav.nav_usd_micros for _, nav in h.outputs("pit.v1.acct.nav_update")]
    assert navs == expected
