"""The package's shape: no import circles between statemw's modules, and no numpy until
semantic memory is used (a web worker that never uses it does not pay for it)."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

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


def fresh(code: str) -> str:
    """What `code` prints, run in a new interpreter that imports this checkout's statemw."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PACKAGE.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_importing_statemw_and_its_web_adapters_does_not_import_numpy() -> None:
    code = "import sys, statemw, statemw.asgi, statemw.wsgi, statemw.flask\n"
    assert fresh(code + "print('numpy' in sys.modules)") == "False"


SESSION = """
import sys, statemw
store = statemw.Store("memory://")
session = store.create()
for i in range(6):
    session.add_message("user", f"message {i} about topic{i % 3}")
session.save()
session = store.load(session.id)
session.get_history(max_tokens=100)
print("numpy" in sys.modules)
"""


@pytest.mark.skipif(importlib.util.find_spec("numpy") is None, reason="numpy is not installed")
@pytest.mark.parametrize(
    "use",
    [
        """
from statemw.vectors import pack_vector, unpack_vector
unpacked = unpack_vector(pack_vector([3.0, 4.0], 7))
assert unpacked is not None and list(unpacked[0]) == [0.6000000238418579, 0.800000011920929]
""",
        """
sent = session.get_history(
    relevant_to="topic1", embed=lambda t: [t.count("topic1"), 1.0], k=2, format="raw"
)
assert [m["content"] for m in sent][-3:] == ["message 1 about topic1", "message 4 about topic1",
    "message 5 about topic2"], sent
""",
    ],
    ids=["pack_vector", "get_history"],
)
def test_numpy_is_imported_by_the_first_semantic_use(use: str) -> None:
    """Saving, loading and a plain window import no numpy; packing a vector or selecting by
    meaning does, and works."""
    done = fresh(SESSION + use + "print('numpy' in sys.modules)")
    assert done.splitlines() == ["False", "True"]
