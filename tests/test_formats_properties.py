"""The Anthropic shape of any window is a valid Messages API request (hypothesis)."""

from __future__ import annotations

import copy
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


def _nested() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.text(max_size=5)
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.dictionaries(st.text(max_size=3), inner, max_size=3),
            st.tuples(inner, inner),
        ),
        max_leaves=12,
    )


def _scribble(value: Any) -> None:
    """Change every list and dict inside a value in place."""
    if isinstance(value, list):
        for item in value:
            _scribble(item)
        value.append("scribbled")
    elif isinstance(value, dict):
        for item in list(value.values()):
            _scribble(item)
        value["scribbled"] = True
    elif isinstance(value, tuple):
        for item in value:
            _scribble(item)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {"role": st.sampled_from(["user", "assistant", "agent"])},
            optional={"content": _nested(), "extra": _nested()},
        ),
        min_size=1,
        max_size=5,
    ),
    st.sampled_from(["openai", "raw", "anthropic"]),
)
def test_what_get_history_hands_out_shares_nothing_with_the_session(
    messages: list[dict[str, Any]], format: str
) -> None:
    session = stored_session(messages)
    before = [copy.deepcopy(m) for m in session.messages]
    _scribble(session.get_history(format=format))
    assert list(session.messages) == before
