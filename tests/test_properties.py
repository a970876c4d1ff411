"""Property tests: the merge of concurrent saves, and the message log view."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from statemw import Store
from statemw.records import Delta, Entry, SessionHeader, apply_delta

keys = st.sampled_from(["a", "b", "c", "d"])
# one writer's save: keys set (value = its tag), keys deleted, number of messages appended
saves = st.tuples(
    st.dictionaries(keys, st.integers(0, 9), max_size=3),
    st.lists(keys, max_size=2),
    st.integers(0, 3),
)


@given(st.lists(saves, min_size=1, max_size=12))
def test_applying_deltas_keeps_every_append_and_the_last_write_of_each_key(
    commits: list[tuple[dict[str, int], list[str], int]],
) -> None:
    header: SessionHeader | None = None
    model: dict[str, bytes] = {}
    appended = 0
    for i, (sets, deletes, appends) in enumerate(commits):
        delta = Delta(
            session_id="s",
            now=float(i),
            create=SessionHeader("s", None, 0.0, 0.0),
            set={k: Entry(bytes([v]), float(i)) for k, v in sets.items()},
            delete=deletes,
            append=[b"m"] * appends,
            append_tokens=appends,
        )
        header = apply_delta(header, delta)
        for k in deletes:
            model.pop(k, None)
        model.update({k: bytes([v]) for k, v in sets.items()})
        appended += appends
    assert header is not None
    assert {k: e.value for k, e in header.state.items()} == model
    assert header.message_count == header.token_total == appended
    assert header.revision == len(commits)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["phone", "laptop"]), keys, st.integers(0, 3)), max_size=10)
)
def test_interleaved_devices_lose_no_message_and_keep_last_write_per_key(
    steps: list[tuple[str, str, int]],
) -> None:
    store = Store("memory://")
    root = store.create()
    root.save()
    devices = {"phone": store.load(root.id), "laptop": store.load(root.id)}
    expected_messages: list[str] = []
    expected_state: dict[str, Any] = {}
    for n, (device, key, value) in enumerate(steps):
        session = devices[device]
        session.add_message("user", f"{device}-{n}")
        session[key] = value
        session.save()  # commit order is step order
        expected_messages.append(f"{device}-{n}")
        expected_state[key] = value
    final = store.load(root.id)
    assert [m["content"] for m in final.messages] == expected_messages
    assert dict(final) == expected_state


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 150),
    st.integers(0, 20),
    st.integers(-200, 200),
    st.integers(-200, 200),
    st.integers(0, 5),
)
def test_the_log_view_slices_like_a_list(
    n: int, window: int, start: int, stop: int, unsaved: int
) -> None:
    store = Store("memory://", window=window)
    session = store.create()
    for i in range(n):
        session.add_message("user", str(i))
    session.save()
    again = store.load(session.id)
    for i in range(unsaved):
        again.add_message("user", f"new{i}")
    expected = [str(i) for i in range(n)] + [f"new{i}" for i in range(unsaved)]
    assert len(again.messages) == len(expected)
    assert [m["content"] for m in again.messages[start:stop]] == expected[start:stop]
    if expected:
        assert again.messages[start % len(expected)]["content"] == expected[start % len(expected)]
