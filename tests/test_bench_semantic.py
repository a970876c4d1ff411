"""bench/semantic.py runs, with its deterministic stand-in embedding, and meets the targets it
measures: one model call per web turn, vectors under 1.6 KB, turns never lose recall."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent.parent / "bench" / "semantic.py"


def load_bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_semantic", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_semantic_bench_runs_and_meets_its_targets() -> None:
    lines: list[str] = []
    report = load_bench().main(
        ["--quick", "--conversations", "6", "--lengths", "1000,2000", "--sizes", "300,1000"],
        lines.append,
    )
    recall = report["recall"]
    assert recall["semantic k=5"][0] > recall["max_tokens=2000"][0]
    for k in (3, 5, 10):
        with_turns, alone = recall[f"semantic k={k} + turns"], recall[f"semantic k={k}"]
        assert with_turns[0] >= alone[0]
    for k in (3, 5):  # a fact in a tool result: its question is what a probe finds
        assert recall[f"semantic k={k} + turns"][1] > recall[f"semantic k={k}"][1]
    # sketches (spans of 1,000 read sparsely) lose little against scoring every vector
    assert recall["semantic k=5 + turns"][0] >= recall["semantic k=5 + turns, all scored"][0] - 0.1
    assert report["web_turn"]["calls"] <= 1.0
    assert report["web_turn"]["texts"] <= 2.0  # the user's message and the last answer
    for size in (300, 1000):
        vector_bytes, written = report["cost"][size][2], report["cost"][size][6]
        assert vector_bytes <= 1600
        assert written < 2 * vector_bytes  # a save writes its vectors (a block now and then)
    assert report["cost"][1000][5] > 0  # the long session has its sketches (B per message)
    assert any("recall" in line for line in lines)


def test_the_generator_is_seeded_and_plants_findable_facts() -> None:
    bench = load_bench()
    one, again = bench.generate(3, 600), bench.generate(3, 600)
    assert one.messages == again.messages
    assert len(one.probes) == 3
    for probe in one.probes:
        holders = [m for m in one.messages if probe.answer in bench._text(m)]
        assert holders == [one.messages[probe.position]]
        assert (holders[0]["role"] == "tool") is probe.in_tool
