"""The README never lies: every ```python block in it runs, and every ```py fragment (code
shown in part, with names defined elsewhere) at least compiles, `await` included."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from statemw import configure

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
FRAGMENTS = re.findall(r"```py\n(.*?)```", README.read_text(), flags=re.S)


@pytest.fixture(autouse=True)
def fresh_default_store() -> Iterator[None]:
    yield
    configure(None)


def test_the_readme_has_runnable_examples() -> None:
    assert BLOCKS


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_block_runs(code: str) -> None:
    exec(compile(code, str(README), "exec"), {"__name__": "readme"})


@pytest.mark.parametrize("code", FRAGMENTS, ids=[f"fragment{i}" for i in range(len(FRAGMENTS))])
def test_readme_fragment_compiles(code: str) -> None:
    compile(code, str(README), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
