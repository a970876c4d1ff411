"""docs/context.md never lies: every ```python block in it runs (```py blocks are fragments)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "context.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_context_page_has_a_runnable_example() -> None:
    assert BLOCKS


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_context_page_block_runs(code: str) -> None:
    exec(compile(code, str(DOC), "exec"), {"__name__": "context_doc"})
