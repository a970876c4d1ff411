"""Nothing outlives its time: a user's state expires with the user's last session (or by
user_ttl), purge leaves nothing dead behind, and Redis puts a TTL on everything it writes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from statemw import Store, generate_key
from statemw.backends.kv import SWEEP_BATCH
from tests.at_rest import stored_records
from tests.support import FakeClock, store_url

USER = "marker.user@example.com"


@pytest.fixture(params=["plain", "sealed"])
def sealed(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "sealed")


@pytest.fixture
def make(
    backend_kind: str, tmp_path: Path, clock: FakeClock, sealed: bool
) -> Iterator[Callable[..., Store]]:
    """Stores on one backend (encrypted or not) with the fake clock: make(idle=..., ...)."""
    made: list[Store] = []
    key = generate_key() if sealed else None

    def make(**options: Any) -> Store:
        store = Store(store_url(backend_kind, tmp_path), clock=clock, encryption_key=key, **options)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def user_session(store: Store, **user_state: Any) -> str:
    session = store.create(user_id=USER)
    session.add_message("user", "hello")
    session.user.update(user_state)
    session.save()
    return session.id


def test_user_state_lives_while_one_of_the_users_sessions_does(
    make: Callable[..., Store], clock: FakeClock
) -> None:
    store = make(idle=100)
    user_session(store, plan="pro")
    clock.advance(50)
    user_session(store)  # expires at 150
    clock.advance(70)  # the first session expired, the second has not
    assert store.user_state(USER) == {"plan": "pro"}
    assert store.create(user_id=USER).user == {"plan": "pro"}


def test_user_state_expires_with_the_users_last_session(
    make: Callable[..., Store], clock: FakeClock
) -> None:
    store = make(idle=100)
    first = user_session(store, plan="pro", home="SF")
    clock.advance(101)
    assert store.user_state(USER) == {}
    later = store.create(user_id=USER)
    assert later.user == {}
    later.user["plan"] = "free"
    later.save()  # the old state does not come back with the new
    assert store.load(later.id).user == {"plan": "free"}
    assert store.user_sessions(USER) == [later.id]
    assert store.get(first) is None


def test_user_ttl_gives_user_state_a_lifetime_of_its_own(
    make: Callable[..., Store], clock: FakeClock
) -> None:
    store = make(idle=100, user_ttl=1000)
    user_session(store, plan="pro")
    clock.advance(500)  # the session is gone, the user's state is not
    assert store.create(user_id=USER).user == {"plan": "pro"}
    user_session(store)
    clock.advance(501)  # 1001 s after the state was saved
    assert store.user_state(USER) == {}
    assert store.create(user_id=USER).user == {}


def test_purge_leaves_nothing_of_expired_users(
    make: Callable[..., Store], clock: FakeClock
) -> None:
    store = make(idle=100)
    for _ in range(3):
        user_session(store, plan="pro")
    child = store.create(user_id="other")
    child.child("research")["notes"] = [1, 2]
    child.user["x"] = 1
    child.save()
    assert stored_records(store) > 0
    clock.advance(101)
    assert store.purge() == 4
    assert stored_records(store) == 0


def test_purge_keeps_what_a_live_session_of_the_user_still_needs(
    make: Callable[..., Store], clock: FakeClock
) -> None:
    store = make(idle=100)
    user_session(store, plan="pro")
    clock.advance(50)
    alive = user_session(store)
    clock.advance(60)
    assert store.purge() == 1
    assert store.user_sessions(USER) == [alive]
    assert store.load(alive).user == {"plan": "pro"}


@pytest.fixture
def redis_store(tmp_path: Path, clock: FakeClock, sealed: bool) -> Iterator[Store]:
    key = generate_key() if sealed else None
    store = Store(store_url("redis", tmp_path), clock=clock, encryption_key=key, idle=100)
    yield store
    store.close()


def test_purge_drops_index_entries_that_point_at_nothing(redis_store: Store) -> None:
    """Only Redis drops a session's keys by itself (a TTL), leaving its index entry."""
    store = redis_store
    gone = user_session(store)
    kept = user_session(store, plan="pro")
    backend: Any = store.backend
    for key in backend.client.scan_iter(match=backend.layout.base(gone) + "*"):
        backend.client.delete(key)  # what a TTL does
    store.purge()
    ref = store.codec.user_refs(USER)[0]
    assert backend.client.zrange(backend.layout.user_index(ref), 0, -1) == [kept.encode()]


def test_redis_puts_a_ttl_on_every_key_it_writes(redis_store: Store) -> None:
    store = redis_store
    session = store.create(user_id=USER)
    session["a"] = 1
    session.set("short", 2, ttl=10)
    session.user["plan"] = "pro"
    session.user.set("otp", "123", ttl=5)
    session.child("research").add_message("user", "x")
    session.add_message("user", "hello")
    session.save()
    backend: Any = store.backend
    keys = list(backend.client.scan_iter(match=backend.layout.prefix + "*"))
    assert len(keys) >= 6  # the session, its expiries, messages, child, user record, user index
    ttls = {key: backend.client.pttl(key) for key in keys}
    assert all(0 < ttl <= 101_000 for ttl in ttls.values()), ttls


# -- reclamation without purge (memory, diskcache) ------------------------------------------------


@pytest.fixture(params=["memory", "diskcache"])
def local(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock, sealed: bool
) -> Iterator[Store]:
    """A store on a backend that has no expiry of its own: statemw reclaims for it."""
    key = generate_key() if sealed else None
    url = store_url(str(request.param), tmp_path)
    store = Store(url, clock=clock, encryption_key=key, idle=100)
    yield store
    store.close()


def sessions(store: Store, count: int, user_id: str | None = None) -> list[str]:
    ids = []
    for n in range(count):
        session = store.create(user_id=user_id)
        session["n"] = n
        session.add_message("user", f"message {n}")
        if user_id is not None:
            session.user["seen"] = n
        session.save()
        ids.append(session.id)
    return ids


def test_expired_sessions_are_reclaimed_by_later_saves_without_purge(
    local: Store, clock: FakeClock
) -> None:
    one = stored_records(local)
    sessions(local, 1)
    per_session = stored_records(local) - one
    sessions(local, 39)
    sessions(local, 10, user_id=USER)
    clock.advance(101)
    fresh = sessions(local, 4)  # each save reclaims up to SWEEP_BATCH (16): 50 in 4 saves
    assert stored_records(local) == 4 * per_session
    assert [local.get(sid) is not None for sid in fresh] == [True] * 4


def test_reclaiming_is_bounded_per_operation(local: Store, clock: FakeClock) -> None:
    sessions(local, 40)
    before = stored_records(local)
    clock.advance(101)
    left = []
    for _ in range(3):
        local.get("no-such-session")
        left.append(stored_records(local))
    assert left == [before - 2 * SWEEP_BATCH, before - 4 * SWEEP_BATCH, 0]  # 2 records each


def test_a_session_saved_again_is_not_reclaimed_at_its_first_expiry(
    local: Store, clock: FakeClock
) -> None:
    [kept] = sessions(local, 1, user_id=USER)
    clock.advance(90)
    session = local.load(kept)
    session["again"] = True
    session.save()  # expires at 190 now
    clock.advance(20)
    sessions(local, 1)
    clock.advance(20)
    sessions(local, 1)
    assert local.load(kept)["again"] is True
    assert local.user_state(USER) == {"seen": 0}


def test_a_users_state_is_reclaimed_with_the_users_last_session(
    local: Store, clock: FakeClock
) -> None:
    sessions(local, 3, user_id=USER)
    clock.advance(101)
    sessions(local, 1)
    assert stored_records(local) == 2  # the new session's header and messages: nothing of USER
