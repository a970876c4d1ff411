"""Nothing readable at rest: planted markers (content, state key names, user ids, a 60 KB
message) searched for in every byte a store holds. With an encryption key: none, ever. Without
one: none once forget_user, delete and expiry (with the store's own reclamation) are done."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from statemw import Store, generate_key
from statemw.backends.redis import ops as redis_ops
from tests.at_rest import store_bytes
from tests.support import FakeClock, store_url

USER = "marker.user.5d2@example.com"
MARKERS = {
    "content": "MARKER-CONTENT-7f3a",
    "state key name": "MARKER_KEYNAME_9b1",
    "state value": "MARKER-VALUE-44c",
    "user id": USER,
    "user state key name": "MARKER_USERKEY_e07",
    "user state value": "MARKER-USERVALUE-31d",
    "big message": "MARKER-BIG-60KB-a9e",
    "sub-session state": "MARKER-CHILD-b82",
    "summary": "MARKER-SUMMARY-c4f",
}
BIG = MARKERS["big message"] + " " + "".join(f"{n:06d} words " for n in range(5000))  # ~60 KB
LIFETIME = 100.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def plant(store: Store, user_id: str | None) -> str:
    """A session holding every kind of marker; its id."""
    session = store.create(user_id=user_id)
    session[MARKERS["state key name"]] = MARKERS["state value"]
    session.set("short", MARKERS["state value"], ttl=10)
    session.add_message("user", MARKERS["content"])
    session.add_message("assistant", BIG)
    session.add_message("user", "more")
    session.set_summary(MARKERS["summary"], upto=2)
    if user_id is not None:
        session.user[MARKERS["user state key name"]] = MARKERS["user state value"]
    session.child("research")["notes"] = MARKERS["sub-session state"]
    session.save()
    return session.id


def bystander(store: Store) -> None:
    """A session that stays, around the ones that go (their pages stay in use)."""
    session = store.create()
    for n in range(50):
        session.add_message("user", f"bystander {n} " * 20)
    session["k"] = "v" * 2000
    session.save()


def found(store: Store) -> list[str]:
    held = store_bytes(store)
    return [what for what, marker in MARKERS.items() if marker.encode() in held]


@pytest.fixture
def sealed_store(backend_kind: str, tmp_path: Path, clock: FakeClock) -> Iterator[Store]:
    url = store_url(backend_kind, tmp_path)
    store = Store(url, clock=clock, encryption_key=generate_key(), idle=LIFETIME)
    yield store
    store.close()


@pytest.fixture
def plain_store(
    backend_kind: str, tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Store]:
    if backend_kind == "redis":  # Redis drops keys by its own (real) clock: no slack to wait
        monkeypatch.setattr(redis_ops, "EXPIRY_SLACK_MS", 0)
    url = store_url(backend_kind, tmp_path)
    idle = 0.2 if backend_kind == "redis" else LIFETIME
    store = Store(url, clock=clock, idle=idle)
    yield store
    store.close()


def test_with_a_key_no_marker_is_ever_readable_at_rest(sealed_store: Store) -> None:
    for user_id in (USER, None, "other@example.com"):
        plant(sealed_store, user_id)
    assert found(sealed_store) == []
    assert sealed_store.create(user_id=USER).user == {
        MARKERS["user state key name"]: MARKERS["user state value"]
    }


def test_without_a_key_nothing_is_left_after_forget_delete_and_expiry(
    plain_store: Store, backend_kind: str, clock: FakeClock
) -> None:
    store = plain_store
    bystander(store)
    plant(store, USER)
    anonymous = plant(store, None)
    bystander(store)
    assert found(store) == list(MARKERS)  # the search sees what is there
    assert store.forget_user(USER) == 1
    assert store.delete(anonymous)
    assert found(store) == []
    expiring = plant(store, USER)
    assert set(found(store)) == set(MARKERS)
    if backend_kind == "redis":  # Redis's own TTLs, on Redis's clock
        deadline = time.monotonic() + 5
        while found(store) and time.monotonic() < deadline:
            time.sleep(0.05)
    else:
        clock.advance(LIFETIME + 1)
        if backend_kind == "postgres":  # no reclamation of its own: purge is the sweep
            store.purge()
        else:  # the next operation of the store reclaims
            store.get(expiring)
    assert found(store) == []
