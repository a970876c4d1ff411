"""KeptStates, the Redis backend's large states kept per session: pure, no Redis (the same
behaviour against a real server: tests/test_redis_kept.py)."""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import given
from hypothesis import strategies as st

from statemw.backends.redis.kept import KEEP_FROM, KeptStates, entry_size
from statemw.records import Delta, Entry, merge_state

NOW = 1_700_000_000.0


def state(keys: int, value: bytes = b"v") -> dict[str, Entry]:
    return {f"key{i}": Entry(value, NOW) for i in range(keys)}


def test_a_large_state_is_kept_with_its_version() -> None:
    states = KeptStates()
    states.read("s", b"inc", 3, state(KEEP_FROM))
    kept = states["s"]
    assert (kept.incarnation, kept.revision, len(kept.entries())) == (b"inc", 3, KEEP_FROM)


def test_a_small_state_or_one_without_incarnation_is_not_kept() -> None:
    states = KeptStates()
    states.read("small", b"inc", 1, state(KEEP_FROM - 1))
    states.read("old", None, 1, state(KEEP_FROM))
    assert dict(states) == {}


def test_a_state_read_small_again_is_dropped() -> None:
    states = KeptStates()
    states.read("s", b"inc", 1, state(KEEP_FROM))
    states.read("s", b"inc", 2, state(3))
    assert ("s" in states, states.held) == (False, 0)


def test_the_next_revisions_commit_is_applied() -> None:
    states = KeptStates()
    states.read("s", b"inc", 1, state(KEEP_FROM))
    states.committed(Delta("s", NOW, set={"new": Entry(b"n", NOW)}, delete=["key0"]), 2)
    kept = states["s"]
    entries = kept.entries()
    assert (kept.revision, "new" in entries, "key0" in entries) == (2, True, False)


def test_a_commit_after_a_gap_drops_the_kept_state() -> None:
    states = KeptStates()
    states.read("s", b"inc", 1, state(KEEP_FROM))
    states.committed(Delta("s", NOW, set={"new": Entry(b"n", NOW)}), 3)
    assert "s" not in states


def test_a_kept_state_is_not_changed_by_the_state_it_was_read_from() -> None:
    states = KeptStates()
    read = state(KEEP_FROM)
    states.read("s", b"inc", 1, read)
    read.clear()
    assert len(states["s"].entries()) == KEEP_FROM


def test_past_the_budget_the_kept_states_start_afresh() -> None:
    one = entry_size(Entry(b"v", NOW)) * KEEP_FROM
    states = KeptStates(budget=2 * one)
    for sid in ("a", "b", "c"):
        states.read(sid, b"inc", 1, state(KEEP_FROM))
    assert (sorted(states), states.held) == (["c"], one)


def test_a_state_larger_than_the_budget_is_not_kept() -> None:
    states = KeptStates(budget=100)
    states.read("s", b"inc", 1, state(KEEP_FROM))
    assert ("s" in states, states.held) == (False, 0)


def test_drop_tree_forgets_the_session_and_its_sub_sessions_only() -> None:
    states = KeptStates()
    for sid in ("a", "a/notes", "a/notes/x", "ab"):
        states.read(sid, b"inc", 1, state(KEEP_FROM))
    states.drop_tree("a")
    assert sorted(states) == ["ab"]


def live(entries: Mapping[str, Entry], now: float) -> dict[str, Entry]:
    return {key: entry for key, entry in entries.items() if entry.live(now)}


_KEYS = st.sampled_from([f"key{i}" for i in range(KEEP_FROM + 4)])
_ENTRY = st.builds(
    Entry,
    st.binary(max_size=6),
    st.just(NOW),
    st.one_of(st.none(), st.floats(NOW - 10, NOW + 10)),
)
_DELTAS = st.lists(
    st.tuples(st.dictionaries(_KEYS, _ENTRY, max_size=4), st.lists(_KEYS, max_size=3)),
    max_size=6,
)


@given(_DELTAS)
def test_commits_applied_to_a_kept_state_give_the_merged_state(
    deltas: list[tuple[dict[str, Entry], list[str]]],
) -> None:
    """What the commit script stores, merge_state computes: a kept state follows it (but for
    the keys past their TTL, which it keeps and every reader skips), and its size stays what
    its entries count."""
    states = KeptStates()
    stored = state(KEEP_FROM + 2)
    states.read("s", b"inc", 1, stored)
    for revision, (sets, deletes) in enumerate(deltas * 20, 2):  # enough to fold the changes
        now = NOW + revision
        delta = Delta("s", now, set=sets, delete=deletes)
        stored = merge_state(stored, delta, now)
        states.committed(delta, revision)
        kept = states["s"]
        entries = kept.entries()
        assert live(entries, now) == live(stored, now)
        counted = sum(map(entry_size, entries.values()))
        assert kept.size == counted == states.held


def test_a_commit_costs_what_it_changed_until_the_changes_are_folded_in() -> None:
    states = KeptStates()
    states.read("s", b"inc", 1, state(10_000))
    base = states["s"].base
    states.committed(Delta("s", NOW, set={"key1": Entry(b"x", NOW)}), 2)
    assert states["s"].base is base  # not copied
    assert states["s"].changes == {"key1": Entry(b"x", NOW)}
