"""With an encryption key, names are sealed too: state key names and user ids never show at
rest; a wrong key fails the load; rotation and records from before keep working."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from statemw import DecryptionError, Store, generate_key
from statemw.codec import Codec
from statemw.records import Delta
from tests.at_rest import store_bytes
from tests.support import FakeClock, store_url

USER = "marker.user@example.com"
KEY_NAME = "MARKER_card_number"


@pytest.fixture
def url(backend_kind: str, tmp_path: Path) -> str:
    return store_url(backend_kind, tmp_path)


@pytest.fixture
def stores(url: str, clock: FakeClock) -> Iterator[list[Store]]:
    """Stores made by `opened`, closed at the end."""
    made: list[Store] = []
    yield made
    for store in made:
        store.close()


def opened(stores: list[Store], url: str, clock: FakeClock, key: object) -> Store:
    """Another Store on the same data, with `key` (memory:// shares the first one's dict)."""
    store = Store(url, clock=clock, encryption_key=key)  # type: ignore[arg-type]
    if url == "memory://" and stores:
        store._backends = stores[0]._open()
    stores.append(store)
    return store


def test_no_state_key_name_or_user_id_is_readable_at_rest(
    stores: list[Store], url: str, clock: FakeClock
) -> None:
    store = opened(stores, url, clock, generate_key())
    session = store.create(user_id=USER)
    session[KEY_NAME] = "4111"
    session.set("MARKER_short_lived", 1, ttl=60)
    session.user["MARKER_user_key"] = "x"
    session.child("research")["MARKER_child_key"] = "y"
    session.save()
    held = store_bytes(store)
    for marker in (USER, KEY_NAME, "MARKER_short_lived", "MARKER_user_key", "MARKER_child_key"):
        assert marker.encode() not in held
    again = store.load(session.id)
    assert (again.user_id, again[KEY_NAME], again.user["MARKER_user_key"]) == (USER, "4111", "x")
    assert again.child("research")["MARKER_child_key"] == "y"
    assert store.user_sessions(USER) == [session.id]
    assert store.current_session_id(USER) == session.id


def test_a_wrong_key_fails_the_load_even_when_the_session_holds_nothing(
    stores: list[Store], url: str, clock: FakeClock
) -> None:
    empty = opened(stores, url, clock, generate_key()).create()
    empty.save()
    for key in (generate_key(), None):
        with pytest.raises(DecryptionError) as info:
            opened(stores, url, clock, key).load(empty.id)
        assert info.value.session_id == empty.id


def test_a_wrong_key_fails_the_load_of_a_session_from_before_sealed_facts(
    stores: list[Store], url: str, clock: FakeClock
) -> None:
    store = opened(stores, url, clock, generate_key())
    session = store.create()
    session.add_message("user", "hello")
    session.save()
    store.backend.commit(Delta(session.id, clock(), delete=["#"]))  # as written before
    with pytest.raises(DecryptionError):
        opened(stores, url, clock, generate_key()).load(session.id)
    assert store.load(session.id).messages[0]["content"] == "hello"


def test_after_a_key_rotation_everything_is_found_and_rewritten_keys_move(
    stores: list[Store], url: str, clock: FakeClock
) -> None:
    old, new = generate_key(), generate_key()
    before = opened(stores, url, clock, old)
    session = before.create(user_id=USER)
    session["a"], session["b"] = 1, 2
    session.user["home"] = "SF"
    session.save()
    rotated = opened(stores, url, clock, [new, old])
    assert rotated.current_session_id(USER) == session.id
    again = rotated.load(session.id)
    assert (again.user_id, dict(again)) == (USER, {"a": 1, "b": 2})
    assert dict(again.user) == {"home": "SF"}
    again["a"] = 10
    again.user["home"] = "Berlin"
    again.save()
    header = rotated.backend.read_header(session.id, clock())
    assert header is not None
    assert len(header.state) == 3  # a (moved to the new key's name), b, and the sealed facts
    later = rotated.create(user_id=USER)  # a new session of the same user finds its state
    assert later.user["home"] == "Berlin"
    later.save()
    assert rotated.user_sessions(USER) == [session.id, later.id]
    assert dict(rotated.load(session.id)) == {"a": 10, "b": 2}
    assert rotated.forget_user(USER) == 2
    assert rotated.user_state(USER) == {}


def test_records_written_without_encryption_still_read_with_it(
    stores: list[Store], url: str, clock: FakeClock
) -> None:
    plain = opened(stores, url, clock, None)
    session = plain.create(user_id=USER)
    session["a"] = 1
    session.user["home"] = "SF"
    session.save()
    sealed = opened(stores, url, clock, generate_key())
    again = sealed.load(session.id)
    assert (again.user_id, dict(again), dict(again.user)) == (USER, {"a": 1}, {"home": "SF"})
    assert sealed.current_session_id(USER) == session.id
    again["a"] = 2
    again.save()
    assert dict(sealed.load(session.id)) == {"a": 2}
    assert KEY_NAME not in dict(sealed.load(session.id))
    assert sealed.forget_user(USER) == 1


def test_a_name_is_stored_under_the_same_hash_by_every_store_with_the_key() -> None:
    key = generate_key()
    assert Codec(key).entry_key("cart") == Codec([key]).entry_key("cart")
    assert Codec(key).entry_key("cart") != Codec(generate_key()).entry_key("cart")
    assert Codec(key).entry_key("cart") != Codec(key).user_refs("cart")[0]
    assert Codec().entry_key("cart") == "cart"
    assert Codec().user_refs(USER) == [USER]


@pytest.mark.anyio
async def test_the_async_calls_find_and_forget_a_user_under_sealed_names(
    stores: list[Store], url: str, clock: FakeClock
) -> None:
    store = opened(stores, url, clock, generate_key())
    session = await store.acreate(user_id=USER)
    session[KEY_NAME] = "4111"
    session.user["plan"] = "pro"
    await session.asave()
    again = await store.aload(session.id)
    assert (again.user_id, again[KEY_NAME]) == (USER, "4111")
    assert (await store.acreate(user_id=USER)).user == {"plan": "pro"}
    assert await store.acurrent_session_id(USER) == session.id
    assert await store.aforget_user(USER) == 1
    assert await store.auser_sessions(USER) == []
