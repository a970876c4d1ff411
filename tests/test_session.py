"""Session behaviour through a Store, on every backend (the shared contract)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from statemw import (
    ConflictError,
    CorruptRecord,
    InvalidValue,
    LimitExceeded,
    Session,
    SessionNotFound,
    StateError,
    Store,
    UnencodableValue,
)
from statemw.codec import pack
from tests.support import FakeClock


def saved(store: Store, **state: Any) -> Session:
    session = store.create(user_id="harsh")
    session.update(state)
    session.save()
    return session


def test_a_saved_session_comes_back_with_state_messages_and_user(store: Store) -> None:
    session = store.create(user_id="harsh")
    session.add_message("user", "Find flights to Berlin")
    session.add_message("assistant", "When would you like to travel?")
    session["destination"] = "Berlin"
    session.save()

    again = store.load(session.id)

    assert again.user_id == "harsh"
    assert dict(again) == {"destination": "Berlin"}
    assert list(again.messages) == [
        {"role": "user", "content": "Find flights to Berlin"},
        {"role": "assistant", "content": "When would you like to travel?"},
    ]


def test_load_accepts_session_id_by_keyword(store: Store) -> None:
    session = saved(store)
    assert Session.load(session_id=session.id).id == session.id


def test_loading_an_unknown_id_raises_session_not_found(store: Store) -> None:
    with pytest.raises(SessionNotFound) as info:
        store.load("no-such-session")
    assert info.value.session_id == "no-such-session"
    assert store.get("no-such-session") is None


def test_a_new_session_is_not_stored_until_saved(store: Store) -> None:
    session = store.create()
    assert session.is_new
    assert store.get(session.id) is None
    session.save()
    assert store.get(session.id) is not None


def test_saving_an_unmodified_session_writes_nothing(store: Store) -> None:
    session = saved(store, a=1)
    again = store.load(session.id)
    again.save()
    assert store.load(session.id).revision == session.revision == 1


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s.__setitem__("k", 2),
        lambda s: s.__delitem__("k"),
        lambda s: s.update(k=3),
        lambda s: s.__ior__({"k": 4}),
        lambda s: s.pop("k"),
        lambda s: s.popitem(),
        lambda s: s.setdefault("other", 5),
        lambda s: s.clear(),
        lambda s: s.set("k", 6, ttl=10),
        lambda s: s["k"].append(7),
    ],
    ids=[
        "setitem",
        "delitem",
        "update",
        "ior",
        "pop",
        "popitem",
        "setdefault",
        "clear",
        "set",
        "in-place",
    ],
)
def test_every_mutation_marks_the_session_modified_and_is_saved(
    store: Store, mutate: Callable[[Session], Any]
) -> None:
    session = saved(store, k=[1])
    again = store.load(session.id)
    assert not again.modified

    mutate(again)
    expected = dict(again)
    assert again.modified
    again.save()

    assert dict(store.load(session.id)) == expected


def test_session_serializes_like_a_dict(store: Store) -> None:
    session = saved(store, location="Bangalore", n=1)
    assert json.loads(json.dumps(store.load(session.id))) == {"location": "Bangalore", "n": 1}


def test_a_value_msgpack_cannot_encode_is_refused_naming_its_key(memory_store: Store) -> None:
    store = memory_store  # pure logic: run once, not on every backend
    session = store.create()
    with pytest.raises(UnencodableValue, match="'when'"):
        session["when"] = object()
    assert "when" not in session


def test_state_keys_must_be_strings(memory_store: Store) -> None:
    store = memory_store  # pure logic: run once, not on every backend
    session = store.create()
    with pytest.raises(InvalidValue):
        session[1] = "x"  # type: ignore[index]


def test_ephemeral_key_expires_after_its_ttl(store: Store, clock: FakeClock) -> None:
    session = store.create()
    session.set("flight_search_results", ["LH123"], ttl=300)
    session["location"] = "Bangalore"
    session.save()

    clock.advance(299)
    assert store.load(session.id)["flight_search_results"] == ["LH123"]
    clock.advance(2)
    assert "flight_search_results" not in session
    assert dict(store.load(session.id)) == {"location": "Bangalore"}


def test_ttl_must_be_positive(memory_store: Store) -> None:
    store = memory_store  # pure logic: run once, not on every backend
    with pytest.raises(InvalidValue):
        store.create().set("k", 1, ttl=0)


def test_user_state_is_shared_by_all_of_a_users_sessions(store: Store) -> None:
    phone = store.create(user_id="harsh")
    phone.user["timezone"] = "Asia/Kolkata"
    phone.save()

    laptop = store.create(user_id="harsh")
    laptop.save()

    assert store.load(laptop.id).user == {"timezone": "Asia/Kolkata"}
    assert store.create(user_id="other").user == {}


def test_a_session_without_user_has_no_user_state(store: Store) -> None:
    with pytest.raises(StateError, match="no user_id"):
        store.create().user["x"] = 1


def test_sub_session_reads_fall_back_to_parent_and_writes_stay_its_own(store: Store) -> None:
    session = store.create(user_id="harsh")
    session["location"] = "Bangalore"
    flights = session.child("flights")
    flights["destination"] = "Berlin"
    flights.add_message("user", "Book flights")
    session.save()

    again = store.load(session.id)
    sub = again.child("flights")
    assert sub.get("location") == "Bangalore"
    assert "location" in sub
    assert dict(sub) == {"destination": "Berlin"}
    assert "destination" not in again
    assert [m["content"] for m in sub.messages] == ["Book flights"]
    assert len(again.messages) == 0


def test_a_sub_session_loaded_by_id_still_falls_back_to_its_parent(store: Store) -> None:
    session = store.create()
    session["location"] = "Bangalore"
    session.child("flights")["seat"] = "aisle"
    session.save()

    sub = store.load(f"{session.id}/flights")
    assert sub["location"] == "Bangalore"
    assert sub["seat"] == "aisle"


def test_saving_a_child_of_a_new_session_stores_the_parent_first(store: Store) -> None:
    session = store.create()
    child = session.child("hotels")
    child["city"] = "Berlin"
    child.save()
    assert store.load(session.id).child("hotels")["city"] == "Berlin"


def test_rotate_moves_the_data_to_a_new_id(store: Store) -> None:
    session = store.create(user_id="harsh")
    session["cart"] = [1]
    session.add_message("user", "hi")
    session.child("flights")["x"] = 1
    session.save()
    old = session.id

    new = session.rotate()

    assert new != old
    assert session.id == new
    assert store.get(old) is None
    moved = store.load(new)
    assert moved["cart"] == [1]
    assert moved.messages[0]["content"] == "hi"
    assert moved.child("flights")["x"] == 1
    assert store.user_sessions("harsh") == [new]


def test_delete_removes_the_conversation_and_the_object_starts_over(store: Store) -> None:
    session = saved(store, a=1)
    old = session.id
    session.child("c")["x"] = 1
    session.save()

    session.delete()

    assert store.get(old) is None
    assert store.get(f"{old}/c") is None
    assert session.deleted
    assert session.is_new
    assert session.id != old
    assert dict(session) == {}


def test_forget_user_removes_every_session_and_the_users_state(store: Store) -> None:
    a = store.create(user_id="harsh")
    a.user["home"] = "SF"
    a.save()
    b = saved(store, x=1)
    other = store.create(user_id="someone-else")
    other.save()

    assert store.forget_user("harsh") == 2

    assert store.get(a.id) is None
    assert store.get(b.id) is None
    assert store.create(user_id="harsh").user == {}
    assert store.get(other.id) is not None


def test_user_sessions_are_listed_oldest_first_a_page_at_a_time(
    store: Store, clock: FakeClock
) -> None:
    ids = []
    for _ in range(5):
        ids.append(saved(store).id)
        clock.advance(1)
    assert store.user_sessions("harsh", limit=2) == ids[:2]
    assert store.user_sessions("harsh", offset=2, limit=2) == ids[2:4]
    assert store.user_sessions("harsh", offset=4) == ids[4:]


def test_a_session_expires_after_its_idle_time(tmp_path: Any, clock: FakeClock) -> None:
    store = Store("memory://", idle=60, clock=clock)
    session = saved(store, a=1)
    clock.advance(59)
    again = store.load(session.id)
    again.modified = True  # a save that writes, even with nothing new, slides the idle time
    again.save()
    clock.advance(59)
    assert store.get(session.id) is not None
    clock.advance(2)
    assert store.get(session.id) is None


def test_a_session_expires_after_its_ttl_however_busy(clock: FakeClock) -> None:
    store = Store("memory://", ttl=100, idle=None, clock=clock)
    session = saved(store)
    for _ in range(3):
        clock.advance(30)
        session["tick"] = clock.now
        session.save()
    clock.advance(11)
    assert store.get(session.id) is None


def test_saving_a_session_that_expired_meanwhile_raises_not_found(clock: FakeClock) -> None:
    store = Store("memory://", idle=10, clock=clock)
    session = saved(store)
    clock.advance(11)
    session["late"] = True
    with pytest.raises(SessionNotFound):
        session.save()


def test_purge_removes_expired_sessions_and_keys(store: Store, clock: FakeClock) -> None:
    short = Store(store.url, idle=10, clock=clock)
    gone = saved(short)
    kept = short.create()
    kept.set("temp", 1, ttl=5)
    kept["lasting"] = 1
    kept.save()
    clock.advance(6)
    kept["more"] = 1
    kept.save()
    clock.advance(5)

    assert short.purge() == 1
    assert gone.id not in set(short.session_ids())
    assert dict(short.load(kept.id)) == {"lasting": 1, "more": 1}


def test_strict_save_raises_conflict_when_saved_elsewhere(store: Store) -> None:
    session = saved(store, n=0)
    one, two = store.load(session.id), store.load(session.id)
    one["n"] = 1
    one.save(strict=True)
    two["n"] = 2
    with pytest.raises(ConflictError) as info:
        two.save(strict=True)
    assert (info.value.expected, info.value.actual) == (1, 2)
    assert store.load(session.id)["n"] == 1


def test_concurrent_saves_merge_appends_and_distinct_keys(store: Store) -> None:
    session = saved(store)
    phone, laptop = store.load(session.id), store.load(session.id)
    phone.add_message("user", "Find hotels in Berlin")
    phone["from_phone"] = True
    laptop.add_message("user", "Under $150/night")
    laptop["from_laptop"] = True
    phone.save()
    laptop.save()

    merged = store.load(session.id)
    assert [m["content"] for m in merged.messages] == [
        "Find hotels in Berlin",
        "Under $150/night",
    ]
    assert dict(merged) == {"from_phone": True, "from_laptop": True}
    assert len(laptop.messages) == 2  # the laptop sees the phone's message after its save
    assert laptop.messages[0]["content"] == "Find hotels in Berlin"


def test_the_same_key_is_last_write_wins(store: Store) -> None:
    session = saved(store, location="SF")
    a, b = store.load(session.id), store.load(session.id)
    a["location"] = "NYC"
    b["location"] = "Berlin"
    a.save()
    b.save()
    assert store.load(session.id)["location"] == "Berlin"


def test_messages_outside_the_loaded_window_are_read_on_demand(
    backend_kind: str, tmp_path: Any, clock: FakeClock
) -> None:
    from tests.support import store_url

    store = Store(store_url(backend_kind, tmp_path), window=5, clock=clock)
    session = store.create()
    for i in range(300):
        session.add_message("user", f"m{i}")
    session.save()

    again = store.load(session.id)
    assert len(again.messages) == 300
    assert again.messages[0]["content"] == "m0"
    assert again.messages[-1]["content"] == "m299"
    assert [m["content"] for m in again.messages[63:66]] == ["m63", "m64", "m65"]
    assert [m["content"] for m in again.messages[::100]] == ["m0", "m100", "m200"]
    assert sum(1 for _ in again.messages) == 300
    with pytest.raises(IndexError):
        again.messages[300]


def test_a_message_keeps_every_field_it_came_with(store: Store) -> None:
    call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "search", "arguments": '{"q": "Berlin"}'},
            }
        ],
        "reasoning": [{"type": "thinking", "thinking": "...", "signature": b"\x00\x01sig"}],
    }
    session = store.create()
    session.add_message(call)
    session.add_message("tool", "3 flights", tool_call_id="c1", name="search")
    session.save()
    messages = list(store.load(session.id).messages)
    assert messages == [
        call,
        {"role": "tool", "content": "3 flights", "tool_call_id": "c1", "name": "search"},
    ]


def test_a_message_needs_a_role(memory_store: Store) -> None:
    store = memory_store  # pure logic: run once, not on every backend
    with pytest.raises(InvalidValue):
        store.create().add_message("", "hi")


def test_limits_are_enforced_before_anything_is_written(
    backend_kind: str, tmp_path: Any, clock: FakeClock
) -> None:
    from tests.support import store_url

    store = Store(
        store_url(backend_kind, tmp_path),
        max_message_bytes=100,
        max_value_bytes=50,
        max_state_bytes=80,
        max_messages=2,
        clock=clock,
    )
    session = store.create()
    with pytest.raises(LimitExceeded, match="max_message_bytes"):
        session.add_message("user", "x" * 200)
    with pytest.raises(LimitExceeded, match="max_value_bytes"):
        session["big"] = "x" * 60
    session["a"] = "x" * 45
    session["b"] = "x" * 45
    with pytest.raises(LimitExceeded, match="max_state_bytes"):
        session.save()
    assert store.get(session.id) is None
    del session["b"]
    session.add_message("user", "1")
    session.add_message("user", "2")
    with pytest.raises(LimitExceeded, match="max_messages"):
        session.add_message("user", "3")


def test_session_ids_are_random_and_long(memory_store: Store) -> None:
    store = memory_store  # pure logic: run once, not on every backend
    ids = {store.create().id for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) >= 22 for i in ids)  # >= 128 bits of url-safe base64


@pytest.mark.parametrize("bad", ["", "a b", "x" * 200, "~u:harsh", "../etc", "a/", "a//b"])
def test_malformed_ids_are_refused(store: Store, bad: str) -> None:
    with pytest.raises(InvalidValue):
        store.load(bad)


def test_a_session_adds_up_with_other_context(memory_store: Store) -> None:
    store = memory_store  # pure logic: run once, not on every backend
    session = saved(store, location="Bangalore")
    combined = session + {"name": "Harsh"} + {"weather": "sunny"}
    assert combined == {"location": "Bangalore", "name": "Harsh", "weather": "sunny"}


@pytest.mark.anyio
async def test_async_twins_do_what_the_sync_calls_do(store: Store) -> None:
    session = store.create(user_id="harsh")
    session.add_message("user", "hi")
    session["a"] = 1
    session.user["home"] = "SF"
    await session.asave()

    again = await Session.aload(session.id, store=store)
    assert again["a"] == 1
    assert again.user["home"] == "SF"
    assert await again.fetch_messages(0, 1) == [{"role": "user", "content": "hi"}]
    child = await again.achild("flights")
    child["x"] = 1
    await again.asave()
    assert (await store.aload(f"{session.id}/flights"))["x"] == 1
    new = await again.arotate()
    assert await store.auser_sessions("harsh") == [new]
    assert await store.aforget_user("harsh") == 1
    assert await store.aget(new) is None


def test_a_sub_session_shares_its_users_state_and_saves_it(store: Store) -> None:
    session = store.create(user_id="harsh")
    session.save()
    flights = store.load(session.id).child("flights")
    flights.user["seat"] = "aisle"
    assert flights.user is flights.parent.user  # type: ignore[union-attr]
    flights.save()
    assert store.load(session.id).user == {"seat": "aisle"}


def test_a_new_session_of_a_known_user_sees_the_users_state(store: Store) -> None:
    first = store.create(user_id="harsh")
    first.user["home"] = "SF"
    first.save()
    assert store.create(user_id="harsh").user == {"home": "SF"}


@pytest.mark.anyio
async def test_acreate_reads_the_users_state_ahead(store: Store) -> None:
    first = store.create(user_id="harsh")
    first.user["home"] = "SF"
    await first.asave()
    session = await store.acreate(user_id="harsh")
    assert session._user == {"home": "SF"}


def test_an_unsaved_ephemeral_write_that_expires_still_replaces_the_old_value(
    store: Store, clock: FakeClock
) -> None:
    session = saved(store, offer="old")
    session.set("offer", "new", ttl=1)
    clock.advance(1)
    assert "offer" not in session
    session.save()
    assert "offer" not in store.load(session.id)


def test_replacing_the_log_drops_the_old_summary(store: Store) -> None:
    session = store.create()
    for i in range(5):
        session.add_message("user", f"m{i}")
    session.messages = ["summary of m0-m2", *session.messages[-2:]]
    session.save()

    session.messages = [{"role": "user", "content": "fresh start"}]

    assert session.summary is None
    assert session.get_history() == [{"role": "user", "content": "fresh start"}]
    session.save()
    assert store.load(session.id).get_history() == [{"role": "user", "content": "fresh start"}]


def test_after_forget_user_a_deleted_sessions_user_state_is_empty(store: Store) -> None:
    session = store.create(user_id="harsh")
    session.user["home"] = "SF"
    session.save()
    store.forget_user("harsh")
    session.delete()
    assert session.user == {}


def test_new_ids_never_look_like_command_line_options(memory_store: Store) -> None:
    store = memory_store  # pure logic: run once, not on every backend
    assert not any(store.create().id.startswith("-") for _ in range(2000))


def test_purge_reports_its_progress(store: Store, clock: FakeClock) -> None:
    for _ in range(3):
        saved(store)
    seen: list[tuple[int, int]] = []
    store.purge(progress=lambda done, total: seen.append((done, total)))
    assert seen
    assert seen[-1][0] == seen[-1][1] >= 3  # sessions, plus the user's shared record
    assert [done for done, _ in seen] == list(range(1, len(seen) + 1))


@pytest.mark.parametrize(
    ("wire", "error"),
    [
        ([["not", "a", "dict"], 3, 1.0], "not a message and its token count"),
        ([{"role": "user", "content": "x"}, "3", 1.0], "not a message and its token count"),
        ([{"role": "user", "content": "x"}, True, 1.0], "not a message and its token count"),
        ([{"content": "x"}, 3, 1.0], "a message without a role"),
        ([{"role": 1, "content": "x"}, 3, 1.0], "a message without a role"),
        ([{"role": "user", "content": "x"}, 3], "bad message record"),
        (None, "bad message record"),
    ],
)
@pytest.mark.parametrize("options", [{"last": 3}, {"max_tokens": 4000}, {}])
def test_get_history_over_a_corrupt_message_raises_corrupt_record(
    memory_store: Store, wire: Any, error: str, options: dict[str, Any]
) -> None:
    """A bad record among those a window reads raises CorruptRecord naming the session, on the
    plain-text fast path as on the general one; the records around it stay readable."""
    session = memory_store.create()
    for i in range(6):
        session.add_message("user" if i % 2 == 0 else "assistant", f"message {i}")
    session.save()
    loaded = memory_store.load(session.id)
    log = loaded.messages
    log.window[4] = b"\x01\xc1" if wire is None else memory_store.codec.seal(pack(wire))
    with pytest.raises(CorruptRecord, match=error) as info:
        loaded.get_history(**options)
    assert info.value.session_id == session.id
    assert log[5] == {"role": "assistant", "content": "message 5"}
    with pytest.raises(CorruptRecord):
        log[4]
