"""The package's shape: no import circles between statemw's modules."""

from __future__ import annotations

import ast
from pathlib import Path

import statemw

PACKAGE = Path(statemw.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, modules: set[str]) -> set[str]:
    """The statemw modules a module imports, anywhere in it (also inside functions), except
    under `if TYPE_CHECKING:` (type-only)."""
    tree = ast.parse(path.read_text())
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for statement in node.orelse:
                visit(statement)
            return
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:  # `from pkg import submodule` depends on the submodule
                submodule = f"{node.module}.{alias.name}"
                names.add(submodule if submodule in modules else node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {name for name in names if name in modules}


def test_no_module_of_statemw_imports_itself_back_through_others() -> None:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: imported(path, set(paths)) - {name} for name, path in paths.items()}
    cycles: list[list[str]] = []

    def walk(node: str, trail: list[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt in trail:
                cycles.append([*trail[trail.index(nxt) :], nxt])
            elif len(trail) < 12:
                walk(nxt, [*trail, nxt])

    for start in sorted(graph):
        walk(start, [start])
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles[:5])


def test_test_modules_share_helpers_through_support_not_through_each_other() -> None:
    """Shared helpers live in tests/support.py (fixtures in conftest.py): a test module that
    imports another runs or breaks with it."""
    tests = Path(__file__).parent
    found = set()
    for path in sorted(tests.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            found |= {
                (path.stem, ".".join(name.split(".")[:2]))  # the module, not a name in it
                for name in names
                if name.startswith(("tests.test_", "tests.conftest"))
            }
    assert not found, found


def test_the_store_touches_no_private_attribute_of_another_object() -> None:
    """The Store plans I/O; a Session keeps its own bookkeeping (save_plan, committed, ...)."""
    source = (Path(__file__).parent.parent / "statemw" / "store.py").read_text()
    reached = [
        f"line {node.lineno}: .{node.attr}"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
    ]
    assert not reached, reached
