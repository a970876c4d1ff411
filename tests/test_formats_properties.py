"""The Anthropic shape of any window is a valid Messages API request (hypothesis)."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support import conversations, stored_session


@settings(max_examples=100, deadline=None)
@given(conversations(), st.integers(1, 600))
def test_every_window_is_a_valid_anthropic_request(
    original: list[dict[str, Any]], budget: int
) -> None:
    shaped = stored_session(original).get_history(max_tokens=budget, format="anthropic")
    turns = shaped["messages"]
    assert not turns or turns[0]["role"] == "user"
    assert all(a["role"] != b["role"] for a, b in pairwise(turns))
    open_calls: set[str] = set()
    for turn in turns:
        blocks = turn["content"] if isinstance(turn["content"], list) else []
        results = [b["tool_use_id"] for b in blocks if b.get("type") == "tool_result"]
        assert set(results) <= open_calls  # each result answers the turn just before
        if results:  # and results come before any other block of the turn
            assert all(b.get("type") == "tool_result" for b in blocks[: len(results)])
        open_calls = {b["id"] for b in blocks if b.get("type") == "tool_use"}
