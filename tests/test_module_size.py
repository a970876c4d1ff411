"""statemw's modules stay small: one over about 400 lines says in its docstring why it is one
module (issue 15; docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "statemw"
LIMIT = 400


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_a_long_module_says_why_it_is_one_module(path: Path) -> None:
    source = path.read_text()
    if source.count("\n") <= LIMIT:
        return
    docstring = ast.get_docstring(ast.parse(source)) or ""
    assert "One module, past 400 lines, because" in docstring or (
        "One module, past 400 lines, for" in docstring
    ), f"{path.name} is over {LIMIT} lines: split it, or say why in its docstring"
