"""docs/architecture.md cannot drift: its tree names every module of statemw and nothing else,
every file it names exists, and the methods it says a KV has are the KV protocol's."""

from __future__ import annotations

import re
from pathlib import Path

from statemw.backends.kv import KV

ROOT = Path(__file__).parent.parent
DOC = (ROOT / "docs" / "architecture.md").read_text()
NUMBERS = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve",
]  # fmt: skip


def tree() -> set[str]:
    """The files of the tree drawn under `    statemw/`: two spaces per level, each entry a
    `name.py` or a `dir/` first on its line (other lines continue a description)."""
    lines = DOC.split("\n    statemw/\n", 1)[1].split("\n## ", 1)[0].splitlines()
    files: set[str] = set()
    dirs = ["statemw"]
    for line in lines:
        if not line.strip():
            continue
        assert line.startswith("      "), f"outside the tree: {line!r}"
        body = line[4:]
        depth = (len(body) - len(body.lstrip())) // 2
        name = body.split()[0]
        if not (name.endswith(".py") or name.endswith("/")):
            continue  # a description's second line
        assert len(dirs) >= depth, f"{name} is deeper than its directory"
        del dirs[depth:]
        if name.endswith("/"):
            dirs.append(name.rstrip("/"))
        else:
            files.add("/".join([*dirs, name]))
    return files


def test_the_tree_names_every_module_of_the_package_and_no_other() -> None:
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "statemw").rglob("*.py")}
    named = tree()
    assert sorted(modules - named) == [], "modules missing from docs/architecture.md's tree"
    assert sorted(named - modules) == [], "docs/architecture.md's tree names files that are gone"


def test_every_file_the_page_names_exists() -> None:
    files = [
        p.relative_to(ROOT).as_posix()
        for p in ROOT.rglob("*")
        if p.is_file() and not {".git", ".venv"} & set(p.relative_to(ROOT).parts)
    ]
    named = set(re.findall(r"(?<![\w*./-])[\w./-]*\w\.(?:py|md)\b", DOC))  # not globs
    missing = [n for n in sorted(named) if not any(f == n or f.endswith("/" + n) for f in files)]
    assert missing == []


def test_the_kv_methods_it_lists_are_the_protocols() -> None:
    match = re.search(r"a `KV` is (\w+) small methods \(([^)]*)\)", DOC)
    assert match is not None
    listed = re.findall(r"`(\w+)`", match.group(2))
    methods = [name for name in vars(KV) if not name.startswith("_")]
    assert sorted(listed) == sorted(methods)
    assert match.group(1) == NUMBERS[len(methods)]
