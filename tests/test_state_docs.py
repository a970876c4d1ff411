"""docs/state.md never lies: every ```python block in it runs (```py blocks are fragments)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "state.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_state_page_has_runnable_examples() -> None:
    assert len(BLOCKS) == 3


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_state_page_block_runs(code: str) -> None:
    exec(compile(code, str(DOC), "exec"), {"__name__": "state_doc"})
