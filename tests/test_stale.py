"""Stale state: how old each value is, when it is due for a check, confirming it (issue 14).

Every test runs on every backend (conftest's `store`), on a fake clock.
"""

from __future__ import annotations

import pickle

import pytest

from statemw import InvalidValue, Session, StaleKey, StateError, Store
from statemw.backends.kv import KVBackend
from statemw.backends.postgres import PostgresBackend
from statemw.backends.redis.client import RedisBackend
from statemw.codec import decode_header, encode_header, pack
from statemw.records import Entry
from tests.postgres_server import execute
from tests.support import FakeClock

DAY = 86400.0


def saved_and_loaded(session: Session) -> Session:
    session.save()
    return session.store.load(session.id)


# -- updated_at ------------------------------------------------------------------------------------


def test_updated_at_is_when_the_value_was_set(memory_store: Store, clock: FakeClock) -> None:
    session = memory_store.create()
    session["city"] = "San Francisco"
    clock.advance(5)
    assert session.updated_at("city") == clock.now - 5


def test_updated_at_survives_a_save_and_a_load(store: Store, clock: FakeClock) -> None:
    session = store.create()
    session["city"] = "San Francisco"
    set_at = clock.now
    clock.advance(30)
    assert saved_and_loaded(session).updated_at("city") == set_at


def test_updated_at_of_a_key_that_is_not_there_is_none(memory_store: Store) -> None:
    session = memory_store.create()
    assert session.updated_at("city") is None


def test_updated_at_of_an_untouched_key_is_left_alone_by_saves_of_others(
    store: Store, clock: FakeClock
) -> None:
    session = store.create()
    session["city"] = "San Francisco"
    session = saved_and_loaded(session)
    clock.advance(100)
    session["date"] = "Friday"
    assert saved_and_loaded(session).updated_at("city") == clock.now - 100


def test_updated_at_of_a_value_changed_in_place_is_when_it_was_saved(
    store: Store, clock: FakeClock
) -> None:
    session = store.create()
    session["cart"] = ["socks"]
    session = saved_and_loaded(session)
    clock.advance(100)
    session["cart"].append("shoes")
    session.save()
    assert (session.updated_at("cart"), store.load(session.id).updated_at("cart")) == (
        clock.now,
        clock.now,
    )


def test_updated_at_of_user_state_is_kept_too(store: Store, clock: FakeClock) -> None:
    session = store.create(user_id="harsh")
    session.user["home"] = "San Francisco"
    set_at = clock.now
    clock.advance(10)
    assert saved_and_loaded(session).user.updated_at("home") == set_at


def test_an_expired_key_has_no_updated_at(memory_store: Store, clock: FakeClock) -> None:
    session = memory_store.create()
    session.set("offer", "10% off", ttl=5)
    clock.advance(5)
    assert session.updated_at("offer") is None


# -- confirm_after and stale_keys ------------------------------------------------------------------


def test_a_value_is_not_stale_before_confirm_after(store: Store, clock: FakeClock) -> None:
    session = store.create()
    session.set("city", "San Francisco", confirm_after=30 * DAY)
    clock.advance(30 * DAY - 1)
    assert saved_and_loaded(session).stale_keys() == []


def test_a_value_is_stale_once_confirm_after_has_passed(store: Store, clock: FakeClock) -> None:
    session = store.create()
    session.set("city", "San Francisco", confirm_after=30 * DAY)
    clock.advance(30 * DAY)
    assert saved_and_loaded(session).stale_keys() == ["city"]


def test_a_stale_value_stays_readable(store: Store, clock: FakeClock) -> None:
    session = store.create()
    session.set("city", "San Francisco", confirm_after=60)
    clock.advance(61)
    assert saved_and_loaded(session)["city"] == "San Francisco"


def test_a_stale_key_says_where_it_lives_and_how_old_it_is(store: Store, clock: FakeClock) -> None:
    session = store.create()
    session.set("city", "San Francisco", confirm_after=60)
    set_at = clock.now
    clock.advance(61)
    [stale] = saved_and_loaded(session).stale_keys()
    assert (stale.key, stale.scope, stale.owner, stale.updated_at, stale.stale_at) == (
        "city",
        "session",
        session.id,
        set_at,
        set_at + 60,
    )


def test_stale_at_says_when_a_key_is_due(store: Store, clock: FakeClock) -> None:
    session = store.create()
    session.set("city", "San Francisco", confirm_after=60)
    session["name"] = "Harsh"
    loaded = saved_and_loaded(session)
    assert (loaded.stale_at("city"), loaded.stale_at("name")) == (clock.now + 60, None)


def test_confirming_a_stale_value_makes_it_fresh_and_keeps_it(
    store: Store, clock: FakeClock
) -> None:
    session = store.create()
    session.set("city", "San Francisco", confirm_after=60)
    session = saved_and_loaded(session)
    clock.advance(61)
    session.confirm("city")
    loaded = saved_and_loaded(session)
    assert (loaded["city"], loaded.stale_keys(), loaded.updated_at("city")) == (
        "San Francisco",
        [],
        clock.now,
    )


def test_a_confirmed_value_is_stale_again_after_another_confirm_after(
    store: Store, clock: FakeClock
) -> None:
    session = store.create()
    session.set("city", "San Francisco", confirm_after=60)
    clock.advance(61)
    session.confirm("city")
    session = saved_and_loaded(session)
    clock.advance(60)
    assert session.stale_keys() == ["city"]


def test_confirming_keeps_the_ttl(store: Store, clock: FakeClock) -> None:
    session = store.create()
    session.set("city", "San Francisco", ttl=100, confirm_after=10)
    expires = clock.now + 100
    clock.advance(20)
    session.confirm("city")
    assert saved_and_loaded(session).expires_at("city") == expires


def test_setting_the_value_again_makes_it_fresh(store: Store, clock: FakeClock) -> None:
    session = store.create()
    session.set("city", "San Francisco", confirm_after=60)
    clock.advance(61)
    session.set("city", "New York", confirm_after=60)
    assert saved_and_loaded(session).stale_keys() == []


def test_a_plain_assignment_replaces_confirm_after_as_it_replaces_a_ttl(
    store: Store, clock: FakeClock
) -> None:
    session = store.create()
    session.set("city", "San Francisco", confirm_after=60)
    session["city"] = "New York"
    clock.advance(61)
    assert saved_and_loaded(session).stale_keys() == []


def test_an_expired_key_is_gone_rather_than_stale(store: Store, clock: FakeClock) -> None:
    session = store.create()
    session.set("offer", "10% off", ttl=100, confirm_after=10)
    clock.advance(100)
    assert (session.stale_keys(), saved_and_loaded(session).stale_keys()) == ([], [])


def test_a_deleted_key_is_not_stale(memory_store: Store, clock: FakeClock) -> None:
    session = memory_store.create()
    session.set("city", "San Francisco", confirm_after=10)
    clock.advance(11)
    del session["city"]
    assert session.stale_keys() == []


def test_confirming_a_key_that_is_not_there_raises_key_error(memory_store: Store) -> None:
    with pytest.raises(KeyError):
        memory_store.create().confirm("city")


@pytest.mark.parametrize("seconds", [0, -1])
def test_confirm_after_must_be_positive(memory_store: Store, seconds: float) -> None:
    with pytest.raises(InvalidValue, match="confirm_after"):
        memory_store.create().set("city", "Paris", confirm_after=seconds)


def test_confirming_marks_the_session_to_be_saved(memory_store: Store) -> None:
    session = memory_store.create()
    session["city"] = "Paris"
    session = saved_and_loaded(session)
    session.confirm("city")
    assert session.unsaved


# -- user state ------------------------------------------------------------------------------------


def test_stale_user_keys_are_listed_with_the_sessions_own(store: Store, clock: FakeClock) -> None:
    session = store.create(user_id="harsh")
    session.user.set("home", "San Francisco", confirm_after=60)
    session.set("destination", "Berlin", confirm_after=60)
    clock.advance(61)
    stale = saved_and_loaded(session).stale_keys()
    assert [(s, s.scope, s.owner) for s in stale] == [
        ("destination", "session", session.id),
        ("home", "user", "harsh"),
    ]


def test_a_users_stale_key_shows_in_each_of_their_sessions(store: Store, clock: FakeClock) -> None:
    first = store.create(user_id="harsh")
    first.user.set("home", "San Francisco", confirm_after=60)
    first.save()
    clock.advance(61)
    assert store.create(user_id="harsh").stale_keys() == ["home"]


def test_confirming_a_stale_user_key_confirms_it_in_the_users_state(
    store: Store, clock: FakeClock
) -> None:
    session = store.create(user_id="harsh")
    session.user.set("home", "San Francisco", confirm_after=60)
    clock.advance(61)
    session = saved_and_loaded(session)
    for key in session.stale_keys():
        session.confirm(key)
    session.save()
    assert store.create(user_id="harsh").stale_keys() == []


def test_a_load_with_nothing_stale_does_not_decode_the_users_state(
    store: Store, clock: FakeClock
) -> None:
    session = store.create(user_id="harsh")
    session.user.set("home", "San Francisco", confirm_after=60)
    loaded = saved_and_loaded(session)
    assert (loaded.stale_keys(), loaded._user) == ([], None)


# -- sub-sessions ----------------------------------------------------------------------------------


def test_a_sub_session_sees_its_parents_stale_keys_as_the_parents(
    store: Store, clock: FakeClock
) -> None:
    session = store.create()
    session.set("location", "San Francisco", confirm_after=60)
    flights = session.child("flights")
    flights.set("seat", "aisle", confirm_after=60)
    session.save()
    clock.advance(61)
    loaded = store.load(session.id).child("flights")
    assert [(s, s.scope, s.owner) for s in loaded.stale_keys()] == [
        ("seat", "session", f"{session.id}/flights"),
        ("location", "parent", session.id),
    ]


def test_a_sub_sessions_own_value_hides_its_parents_stale_one(
    store: Store, clock: FakeClock
) -> None:
    session = store.create()
    session.set("location", "San Francisco", confirm_after=60)
    session.child("flights")["location"] = "Munich"
    session.save()
    clock.advance(61)
    assert store.load(session.id).child("flights").stale_keys() == []


def test_a_sub_session_reads_its_parents_updated_at(store: Store, clock: FakeClock) -> None:
    session = store.create()
    session["location"] = "San Francisco"
    set_at = clock.now
    session.child("flights")["seat"] = "aisle"
    session.save()
    clock.advance(5)
    assert store.load(session.id).child("flights").updated_at("location") == set_at


def test_confirming_in_a_sub_session_confirms_the_parents_value(
    store: Store, clock: FakeClock
) -> None:
    session = store.create()
    session.set("location", "San Francisco", confirm_after=60)
    session.child("flights")["seat"] = "aisle"
    session.save()
    clock.advance(61)
    flights = store.load(session.id).child("flights")
    flights.confirm("location")
    flights.root.save()  # the value lives in the parent: saved with it
    assert store.load(session.id).stale_keys() == []


def test_a_sub_session_loaded_by_its_own_id_lists_its_ancestors_stale_keys(
    store: Store, clock: FakeClock
) -> None:
    session = store.create()
    session.set("location", "San Francisco", confirm_after=60)
    session.child("flights")["seat"] = "aisle"
    session.save()
    clock.advance(61)
    flights = store.load(f"{session.id}/flights")
    assert [(s, s.scope, s.owner) for s in flights.stale_keys()] == [
        ("location", "parent", session.id)
    ]
    assert flights.updated_at("location") == clock.now - 61


def test_a_sub_session_loaded_by_its_own_id_cannot_confirm_its_ancestors_key(
    store: Store, clock: FakeClock
) -> None:
    session = store.create()
    session.set("location", "San Francisco", confirm_after=60)
    session.child("flights")["seat"] = "aisle"
    session.save()
    clock.advance(61)
    flights = store.load(f"{session.id}/flights")
    with pytest.raises(StateError, match="confirm it on that session"):
        flights.confirm("location")


# -- the shape of a stale key ----------------------------------------------------------------------


def test_a_stale_key_is_the_key_as_a_string() -> None:
    stale = StaleKey("city", "user", "harsh", 10.0, 5.0)
    by_key: dict[str, int] = {stale: 1}
    assert (stale == "city", "city" in [stale], by_key["city"]) == (True, True, 1)


def test_a_stale_key_pickles_with_what_it_says() -> None:
    stale = pickle.loads(pickle.dumps(StaleKey("city", "user", "harsh", 10.0, 5.0)))
    assert (stale.scope, stale.owner, stale.stale_at) == ("user", "harsh", 15.0)


# -- records written before confirm_after was kept -------------------------------------------------


def test_an_entry_without_confirm_after_keeps_the_old_wire_form() -> None:
    assert Entry(b"v", 1.0, None).to_wire() == [b"v", 1.0, None]


def test_an_entry_in_the_old_wire_form_reads_as_never_stale() -> None:
    entry = Entry.from_wire([b"v", 1.0, 9.0])
    assert (entry.confirm_after, entry.stale_at) == (None, None)


def write_in_the_old_form(store: Store, sid: str, key: str, value: str, updated_at: float) -> None:
    """Replace a stored key with the bytes (or row) a statemw without confirm_after wrote."""
    data = store.codec.encode(value, what="test")
    backend = store.backend
    if isinstance(backend, KVBackend):
        raw = backend.kv.get("h:" + sid)
        assert raw is not None
        wire = decode_header(raw, session_id=sid)
        wire[11] = {key: [data, updated_at, None]}
        backend.kv.set("h:" + sid, encode_header(wire))
    elif isinstance(backend, RedisBackend):
        field = f"s:{key}"
        backend.client.hset(backend.layout.header(sid), field, pack([data, updated_at, None]))
    else:
        assert isinstance(backend, PostgresBackend)
        schema = backend.settings.schema
        execute(
            f"UPDATE \"{schema}\".state SET value = '\\x{data.hex()}', "
            f"updated_at = {updated_at}, confirm_after = NULL WHERE sid = '{sid}'"
        )


def test_a_key_written_in_the_old_form_reads_with_its_age_and_is_never_stale(
    store: Store, clock: FakeClock
) -> None:
    session = store.create()
    session.set("city", "placeholder", confirm_after=1)
    session.save()
    write_in_the_old_form(store, session.id, "city", "San Francisco", clock.now - 99)
    clock.advance(DAY)

    loaded = store.load(session.id)

    assert (loaded["city"], loaded.updated_at("city"), loaded.stale_keys()) == (
        "San Francisco",
        clock.now - DAY - 99,
        [],
    )


def test_a_key_written_in_the_old_form_takes_confirm_after_when_set_again(
    store: Store, clock: FakeClock
) -> None:
    session = store.create()
    session["city"] = "placeholder"
    session.save()
    write_in_the_old_form(store, session.id, "city", "San Francisco", clock.now)
    loaded = store.load(session.id)
    loaded.set("city", "New York", confirm_after=60)
    loaded.save()
    clock.advance(60)
    assert store.load(session.id).stale_keys() == ["city"]


def test_an_entry_with_fields_from_a_later_statemw_reads_the_ones_it_knows() -> None:
    entry = Entry.from_wire([b"v", 1.0, None, 60.0, "later"])
    assert (entry.value, entry.updated_at, entry.expires_at, entry.confirm_after) == (
        b"v",
        1.0,
        None,
        60.0,
    )
