"""A load reads up front as many messages as recent requests read, up to the store's window."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from statemw import ConfigurationError, Store
from statemw._readahead import EPOCH, FLOOR, Readahead
from tests.support import recorded_calls


def one_epoch(readahead: Readahead, reach: int | None) -> None:
    """EPOCH loads, each request reading the newest `reach` messages (None: none)."""
    for _ in range(EPOCH):
        readahead.size()
        if reach is not None:
            readahead.saw(reach)


def test_a_new_store_reads_its_whole_window_up_front() -> None:
    assert Readahead(100).size() == 100


def test_the_window_shrinks_to_what_an_epoch_of_requests_read() -> None:
    readahead = Readahead(100)
    one_epoch(readahead, 21)
    assert readahead.size() == 21


def test_a_deeper_read_widens_the_next_load_at_once() -> None:
    readahead = Readahead(100)
    one_epoch(readahead, 21)
    readahead.saw(50)
    assert readahead.size() == 50


def test_no_read_widens_it_past_the_store_window() -> None:
    readahead = Readahead(100)
    one_epoch(readahead, 21)
    readahead.saw(5_000)
    assert readahead.size() == 100


def test_one_deep_read_per_epoch_keeps_the_window() -> None:
    readahead = Readahead(100)
    for _ in range(3):
        one_epoch(readahead, 21)
        readahead.saw(80)
    assert readahead.size() == 80


def test_requests_that_read_nothing_leave_the_floor() -> None:
    readahead = Readahead(100)
    one_epoch(readahead, None)
    assert readahead.size() == FLOOR


def test_a_window_below_the_floor_is_kept() -> None:
    readahead = Readahead(3)
    one_epoch(readahead, None)
    assert readahead.size() == 3


@given(
    st.integers(min_value=0, max_value=300),
    st.lists(st.one_of(st.none(), st.integers(min_value=0, max_value=1_000)), max_size=2_000),
)
def test_a_load_reads_within_the_window_and_as_far_as_the_last_read(
    cap: int, events: list[int | None]
) -> None:
    readahead = Readahead(cap)
    for reach in events:
        if reach is None:
            assert min(FLOOR, cap) <= readahead.size() <= cap
        else:
            readahead.saw(reach)
            assert readahead.size() >= min(reach, cap)


# -- through a store ------------------------------------------------------------------------------


def adapted_to_last_20(store: Store, *, system: bool = False) -> str:
    """A 150-message conversation (after a system prompt, if asked), then an EPOCH of requests
    that each load it and send the last 20."""
    session = store.create()
    if system:
        session.add_message("system", "You are terse.")
    for i in range(150):
        session.add_message("user" if i % 2 == 0 else "assistant", f"message {i}")
    session.save()
    for _ in range(EPOCH):
        store.load(session.id).get_history(last=20)
    return session.id


def test_after_an_epoch_of_last_20_a_load_reads_21(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = adapted_to_last_20(store)
    loads = recorded_calls(store.backend, "load", monkeypatch)
    reads = recorded_calls(store.backend, "read_messages", monkeypatch)
    assert len(store.load(sid).get_history(last=20)) == 20
    assert [window for _, window, _ in loads] == [21]
    assert reads == []


def test_reading_further_costs_one_read_then_the_loads_read_that_far(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = adapted_to_last_20(store)
    loads = recorded_calls(store.backend, "load", monkeypatch)
    reads = recorded_calls(store.backend, "read_messages", monkeypatch)
    assert len(store.load(sid).get_history(last=50)) == 50
    assert len(reads) == 1
    assert len(store.load(sid).get_history(last=50)) == 50
    assert [window for _, window, _ in loads] == [21, 51]
    assert len(reads) == 1


def test_the_system_prompt_sent_with_every_window_does_not_widen_it(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = adapted_to_last_20(store, system=True)
    loads = recorded_calls(store.backend, "load", monkeypatch)
    assert store.load(sid).get_history(last=20)[0]["role"] == "system"
    assert [window for _, window, _ in loads] == [21]


@pytest.mark.anyio
async def test_an_async_request_that_reads_further_widens_the_next_async_load(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = adapted_to_last_20(store)
    loads = recorded_calls(store.abackend, "load", monkeypatch)
    session = await store.aload(sid)
    assert len(await session.aget_history(last=50)) == 50
    await store.aload(sid)
    assert [window for _, window, _ in loads] == [21, 51]


def test_a_window_set_on_a_running_store_bounds_the_next_load(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = adapted_to_last_20(store)
    store.window = 5
    loads = recorded_calls(store.backend, "load", monkeypatch)
    assert len(store.load(sid).get_history(last=20)) == 20
    assert [window for _, window, _ in loads] == [5]
    assert store.window == 5


@pytest.mark.parametrize("window", [-1, 2.5, "20", None])
def test_a_window_that_is_not_a_count_of_messages_is_refused(window: object) -> None:
    with pytest.raises(ConfigurationError, match="window"):
        Store("memory://", window=window)  # type: ignore[arg-type]
