"""A large state is decoded part by part, and a load reuses what the load before it decoded
(statemw._state_parts): pure checks on the codec, then the same through each backend."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statemw import LimitExceeded, Store
from statemw._assembled import UNION_FROM, AssembledStates
from statemw._state_parts import PartedState, SharedEntries, StoredSizes
from statemw.codec import Codec
from statemw.records import Entry
from tests.support import BACKENDS, FakeClock, store_url

NOW = 1_700_000_000.0
KEYS = 300
"""Keys of a state large enough that every backend that keeps states keeps this one."""

codec = Codec()


def entry(value: Any, expires_at: float | None = None, confirm_after: float | None = None) -> Entry:
    return Entry(codec.encode(value, what="test"), NOW, expires_at, confirm_after)


class Guarded(dict[str, Any]):
    """A dict subclass whose own methods must not be used (as a session's would track)."""

    def __setitem__(self, key: str, value: Any) -> None:
        raise AssertionError("set through the subclass")

    def update(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("updated through the subclass")

    def pop(self, *args: Any) -> Any:
        raise AssertionError("popped through the subclass")


def decoded(state: Mapping[str, Entry], now: float) -> tuple[Any, ...]:
    """What decode_state gives, the same whether or not it puts the values in a given dict."""
    got = codec.decode_state("s", state, now)
    into = codec.decode_state("s", state, now, into=Guarded()).values
    assert dict(into) == got.values
    return got.values, got.expiry, got.sizes.as_dict(), got.sizes.total, got.checks


values = st.one_of(st.integers(0, 3), st.text(max_size=2), st.lists(st.integers(0, 3), max_size=2))
times = st.sampled_from([NOW - 2, NOW, NOW + 2]) | st.floats(NOW - 3, NOW + 3)
entries = st.builds(entry, values, st.none() | times, st.none() | st.floats(1, 10))
names = st.sampled_from(["a", "b", "c", "d"])  # few, so parts often hold the same key
shared_parts = st.dictionaries(names, entries, max_size=4).map(SharedEntries)
overlays = st.dictionaries(names, st.none() | entries, max_size=3)


@settings(max_examples=300, deadline=None)
@given(
    parts=st.tuples(st.lists(shared_parts, max_size=3), st.lists(overlays, max_size=2)).map(
        lambda shared_then_others: [*shared_then_others[0], *shared_then_others[1]]
    )
    | st.lists(st.one_of(shared_parts, overlays), max_size=4),
    nows=st.lists(times, min_size=1, max_size=4),
)
def test_any_parts_decode_as_the_state_they_add_up_to_at_any_time(
    parts: list[Any], nows: list[float]
) -> None:
    state = PartedState(parts)
    for now in nows:  # the parts keep what they decoded from one time to the next
        assert decoded(state, now) == decoded(dict(state), now)


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(st.one_of(shared_parts, overlays), max_size=4))
def test_a_key_looked_up_in_the_parts_is_the_key_of_the_state_they_add_up_to(
    parts: list[Any],
) -> None:
    state = PartedState(parts)
    flat = state.flat()
    for key in ["a", "b", "c", "d", "e"]:
        assert (key in state, state.get(key)) == (key in flat, flat.get(key))


def test_a_shared_part_is_decoded_once_while_no_ttl_runs_out() -> None:
    part = SharedEntries({"a": entry("x"), "b": entry("y", expires_at=NOW + 10)})
    codec.decode_state("s", PartedState([part]), NOW)
    first = part.decoded
    codec.decode_state("s", PartedState([part, {"c": entry("z")}]), NOW + 9)
    assert part.decoded is first
    later = codec.decode_state("s", PartedState([part]), NOW + 10)
    assert (part.decoded is first, "b" in later.values) == (False, False)


def test_a_mutable_value_is_a_new_copy_at_every_decode() -> None:
    state = PartedState([SharedEntries({"list": entry([1, 2]), "text": entry("t")})])
    first = codec.decode_state("s", state, NOW).values
    first["list"].append(3)
    again = codec.decode_state("s", state, NOW).values
    assert (again["list"], again["list"] is first["list"]) == ([1, 2], False)


bucket_contents = st.dictionaries(names, entries, max_size=3)
rarely = st.sampled_from([False, False, False, False, True])


def bucket(n: int, content: dict[str, Entry]) -> SharedEntries:
    """Bucket n's entries: keys named after the bucket, so buckets hold distinct keys."""
    return SharedEntries({f"{n}{name}": e for name, e in content.items()})


@settings(max_examples=500, deadline=None)
@given(
    first=st.lists(st.tuples(bucket_contents, rarely), min_size=1, max_size=12),
    steps=st.lists(
        st.tuples(
            st.lists(st.tuples(st.integers(0, 12), bucket_contents, rarely), max_size=2), times
        ),
        max_size=5,
    ),
    first_now=times,
)
def test_buckets_assembled_load_after_load_hold_what_the_buckets_hold(
    first: list[tuple[dict[str, Entry], bool]],
    steps: list[tuple[list[tuple[int, dict[str, Entry], bool]], float]],
    first_now: float,
) -> None:
    """Any buckets, some replaced by new ones at each load (a save rewrote them), now and then
    with keys of the next bucket (a key in two buckets): each load's state is what the buckets
    hold."""
    assembled = AssembledStates()
    buckets = [bucket(n + strays, content) for n, (content, strays) in enumerate(first)]
    for step, now in [([], first_now), *steps]:  # each load at its own time
        for n, content, strays in step:
            new = bucket(n + 1 if strays else n, content)
            if n < len(buckets):
                buckets[n] = new
            else:
                buckets.append(new)
        state = assembled.state("h:s", buckets)
        flat = dict(PartedState(buckets))
        assert (dict(state), decoded(state, now)) == (flat, decoded(flat, now))


def loads_agree(first: list[SharedEntries], changes: dict[int, SharedEntries]) -> bool:
    """A load of `first`, then one after `changes` replaced some of them: does the second
    hold what the buckets hold?"""
    assembled = AssembledStates()
    assembled.state("h:s", first)
    buckets = [changes.get(n, b) for n, b in enumerate(first)]
    return dict(assembled.state("h:s", buckets)) == dict(PartedState(buckets))


EIGHT = [bucket(n, {"a": entry(n), "b": entry(n)}) for n in range(8)]
"""Eight buckets, so one rewritten is overlaid on the union (more than an eighth is not)."""


def test_a_key_gone_from_a_rewritten_bucket_is_gone() -> None:
    assert loads_agree(EIGHT, {0: bucket(0, {"a": entry("new")})})


def test_a_key_a_rewritten_bucket_shares_with_a_later_one_reads_as_the_later_one() -> None:
    assert loads_agree(EIGHT, {0: SharedEntries({"0a": entry(0), "1a": entry("stray")})})


def test_buckets_that_share_a_key_from_the_start_read_as_the_buckets_say() -> None:
    shared = [SharedEntries({**b, "k": entry(n)}) for n, b in enumerate(EIGHT)]
    assert loads_agree(shared, {0: SharedEntries({**EIGHT[0], "k": entry("new")})})


def test_a_union_past_the_budget_is_not_kept_and_a_dropped_one_is_gone() -> None:
    assembled = AssembledStates(budget=10)
    assembled.state("h:big", EIGHT)  # 16 keys
    assembled.state("h:small", [bucket(n, {"a": entry(n)}) for n in range(8)])
    assert (list(assembled), assembled.held) == (["h:small"], 8)
    assembled.drop("h:small")
    assert (dict(assembled), assembled.held) == ({}, 0)


def test_a_state_of_fewer_buckets_than_union_from_is_read_bucket_by_bucket() -> None:
    assembled = AssembledStates()
    state = assembled.state("h:s", EIGHT[: UNION_FROM - 1])
    assert (dict(assembled), state.parts) == ({}, tuple(EIGHT[: UNION_FROM - 1]))


def test_sizes_changed_over_a_shared_base_leave_the_base_and_its_other_holders_alone() -> None:
    base = {"a": 3, "b": 5}
    mine, theirs = StoredSizes(base), StoredSizes(base)
    mine.set("a", 10)
    mine.set("b", 0)
    mine.set("c", 2)
    assert (mine.as_dict(), mine.total) == ({"a": 10, "c": 2}, 12)
    assert (base, theirs.as_dict(), theirs.total) == ({"a": 3, "b": 5}, {"a": 3, "b": 5}, 8)


# -- through the backends ---------------------------------------------------------------------

KEEPING = [kind for kind in BACKENDS if kind != "postgres"]  # PostgreSQL reads rows, keeps none


@pytest.fixture
def big(backend_kind: str, tmp_path: Path, clock: FakeClock) -> Iterator[tuple[Store, str]]:
    """A store on the backend and a saved session of KEYS keys, one a list, one with a TTL."""
    store = Store(store_url(backend_kind, tmp_path), clock=clock)
    session = store.create()
    session.update({f"key{i}": f"value {i}" for i in range(KEYS)})
    session["list"] = [1, 2]
    session.set("brief", "gone soon", ttl=10)
    session.save()
    yield store, session.id
    store.close()


def test_a_key_whose_ttl_runs_out_between_loads_is_gone(
    big: tuple[Store, str], clock: FakeClock
) -> None:
    store, sid = big
    assert store.load(sid)["brief"] == "gone soon"
    clock.advance(11)
    loaded = store.load(sid)
    assert ("brief" in loaded, len(loaded)) == (False, KEYS + 1)


def test_a_list_changed_in_place_and_not_saved_does_not_reach_the_next_load(
    big: tuple[Store, str],
) -> None:
    store, sid = big
    store.load(sid)["list"].append(3)
    assert store.load(sid)["list"] == [1, 2]


def test_a_saved_change_is_what_the_next_load_reads(big: tuple[Store, str]) -> None:
    store, sid = big
    first = store.load(sid)
    first["key7"] = "changed"
    del first["key8"]
    first.save()
    loaded = store.load(sid)
    assert (loaded["key7"], "key8" in loaded, loaded["key9"]) == ("changed", False, "value 9")


@pytest.mark.parametrize("backend_kind", KEEPING)
def test_a_load_after_a_one_key_save_decodes_a_small_share_of_the_state(
    big: tuple[Store, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, sid = big
    store.load(sid)
    session = store.load(sid)
    session["key1"] = "changed"
    session.save()
    decoded_entries: list[int] = []
    plain_state = Codec._plain_state

    def counting(self: Codec, record_id: str, state: Any, now: float) -> Any:
        decoded_entries.append(len(state))
        return plain_state(self, record_id, state, now)

    monkeypatch.setattr(Codec, "_plain_state", counting)
    assert store.load(sid)["key1"] == "changed"
    assert 0 < sum(decoded_entries) <= KEYS // 2


def test_the_state_size_limit_counts_a_large_state_exactly_in_every_session_that_loads_it(
    big: tuple[Store, str],
) -> None:
    store, sid = big
    loaded = store.load(sid)
    size = sum(len(store.codec.encode(loaded[key], what="test")) for key in loaded)
    store.max_state_bytes = size + 30
    first, second = store.load(sid), store.load(sid)
    first["key0"] = "x" * 40  # 'value 0' takes 8 bytes (or 9) as stored, this 34 more
    first["key1"] = None  # 8 fewer
    first.save()  # size + 26
    second["key2"] = "value 2xxxxx"  # 5 more: within the limit as this session loaded it
    second.save()
    third = store.load(sid)  # size + 31 stored
    third["key3"] = "value 3" + "x" * 9
    with pytest.raises(LimitExceeded, match="max_state_bytes"):
        third.save()
