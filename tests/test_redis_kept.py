"""A large state on Redis crosses the network only when it changed (backends/redis/kept.py).

Two Store objects on one key prefix stand for two processes: each keeps its own states.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from statemw import Session, Store
from statemw.backends.redis import ops as redis_ops
from statemw.backends.redis.client import RedisBackend
from statemw.backends.redis.kept import KEEP_FROM, KeptStates
from tests.redis_server import RedisServer, isolated_url
from tests.support import FakeClock, recorded_calls

LARGE = KEEP_FROM + 6


@pytest.fixture
def url(tmp_path: Path) -> str:
    return isolated_url(tmp_path.name)


@pytest.fixture
def here(url: str, clock: FakeClock) -> Iterator[Store]:
    store = Store(url, clock=clock)
    yield store
    store.close()


@pytest.fixture
def elsewhere(url: str, clock: FakeClock) -> Iterator[Store]:
    """Another process on the same Redis and key prefix."""
    store = Store(url, clock=clock)
    yield store
    store.close()


def kept(store: Store) -> KeptStates:
    backend = store.backend
    assert isinstance(backend, RedisBackend)
    return backend.load_path.states


def raw(store: Store) -> redis.Redis:
    backend = store.backend
    assert isinstance(backend, RedisBackend)
    client: redis.Redis = backend.client
    return client


def header_key(store: Store, session_id: str) -> str:
    backend = store.backend
    assert isinstance(backend, RedisBackend)
    return backend.layout.header(session_id)


def saved(store: Store, keys: int = LARGE, **more: Any) -> Session:
    session = store.create()
    session.update({f"key{i}": i for i in range(keys)}, **more)
    session.save()
    return session


def whole_reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Each whole header a load reads from here on (HGETALL, or the script's changed answer)."""
    return recorded_calls(redis_ops, "_header_of_fields", monkeypatch)


def test_a_large_state_loaded_again_is_not_read_again(
    here: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = saved(here)
    here.load(session.id)
    reads = whole_reads(monkeypatch)
    loaded = here.load(session.id)
    assert (len(loaded), loaded["key3"]) == (LARGE, 3)
    assert reads == []


def test_a_small_state_is_read_whole_each_time(
    here: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = saved(here, keys=KEEP_FROM - 1)
    here.load(session.id)
    reads = whole_reads(monkeypatch)
    here.load(session.id)
    assert len(reads) == 1
    assert kept(here).get(session.id) is None


def test_this_processs_save_keeps_the_kept_state_in_step(
    here: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = saved(here)
    loaded = here.load(session.id)
    loaded["key1"] = "changed"
    del loaded["key2"]
    loaded["new"] = [1, 2]
    loaded.save()
    reads = whole_reads(monkeypatch)
    again = here.load(session.id)
    assert (again["key1"], "key2" in again, again["new"], len(again)) == (
        "changed",
        False,
        [1, 2],
        LARGE,
    )
    assert reads == []


def test_another_processs_save_is_read(here: Store, elsewhere: Store) -> None:
    session = saved(here)
    here.load(session.id)
    theirs = elsewhere.load(session.id)
    theirs["key1"] = "theirs"
    del theirs["key2"]
    theirs.save()
    loaded = here.load(session.id)
    assert (loaded["key1"], "key2" in loaded) == ("theirs", False)


def test_a_save_after_another_processs_save_is_not_applied_to_a_stale_copy(
    here: Store, elsewhere: Store
) -> None:
    session = saved(here)
    mine = here.load(session.id)
    theirs = elsewhere.load(session.id)
    theirs["key1"] = "theirs"
    theirs.save()
    mine["key2"] = "mine"
    mine.save()  # revision + 2 from what this process kept: its copy is dropped
    loaded = here.load(session.id)
    assert (loaded["key1"], loaded["key2"]) == ("theirs", "mine")


def test_a_session_created_again_under_its_id_is_read_whole(here: Store, elsewhere: Store) -> None:
    """Same id, same revision, other state: the incarnation tells them apart."""
    first = here.create(session_id="chat-1")
    first.update({f"old{i}": i for i in range(LARGE)})
    first.save()
    here.load("chat-1")
    elsewhere.delete(elsewhere.load("chat-1"))
    second = elsewhere.create(session_id="chat-1")
    second.update({f"new{i}": i for i in range(LARGE)})
    second.save()
    loaded = here.load("chat-1")
    assert sorted(loaded)[:2] == ["new0", "new1"]
    assert "old0" not in loaded


def test_a_key_past_its_ttl_is_gone_from_a_kept_state(here: Store, clock: FakeClock) -> None:
    session = saved(here)
    loaded = here.load(session.id)
    loaded.set("short", "lived", ttl=10)
    loaded.save()
    assert here.load(session.id)["short"] == "lived"
    clock.advance(11)
    assert "short" not in here.load(session.id)
    touched = here.load(session.id)
    touched["key0"] = "touched"
    touched.save()  # the commit drops the expired key; the kept copy skips it by its expiry
    assert "short" not in here.load(session.id)


def test_a_header_from_before_incarnations_gets_one_at_its_next_save(
    here: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = saved(here)
    raw(here).hdel(header_key(here, session.id), "_in")
    loaded = here.load(session.id)
    assert kept(here).get(session.id) is None
    loaded["key0"] = "saved"
    loaded.save()
    assert raw(here).hget(header_key(here, session.id), "_in")
    here.load(session.id)
    reads = whole_reads(monkeypatch)
    assert here.load(session.id)["key0"] == "saved"
    assert reads == []


def test_a_server_that_lost_its_scripts_still_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    server = RedisServer().start()  # its own: a flush here must not reach other tests
    store = Store(server.url)
    try:
        session = saved(store)
        store.load(session.id)
        raw(store).script_flush()
        calls = recorded_calls(store.backend, "call", monkeypatch)
        assert len(store.load(session.id)) == LARGE
        assert [type(c).__name__ for (c,) in calls] == ["Transaction", "Command", "Transaction"]
    finally:
        store.close()
        server.remove()


def test_a_deleted_session_leaves_nothing_kept(here: Store) -> None:
    session = saved(here)
    here.load(session.id)
    child = session.child("notes")
    child.update({f"note{i}": i for i in range(LARGE)})
    child.save()
    here.load(child.id)
    here.delete(here.load(session.id))
    assert (kept(here).get(session.id), kept(here).get(child.id)) == (None, None)


def test_forget_user_leaves_nothing_kept(here: Store) -> None:
    session = here.create(user_id="ada")
    session.update({f"key{i}": i for i in range(LARGE)})
    session.user.update({f"pref{i}": i for i in range(LARGE)})
    session.save()
    here.load(session.id)
    assert kept(here).held > 0
    here.forget_user("ada")
    assert kept(here).held == 0


def test_a_large_user_state_is_kept_and_follows_saves(
    here: Store, elsewhere: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = here.create(user_id="ada")
    session.user.update({f"pref{i}": i for i in range(LARGE)})
    session.save()
    here.load(session.id)
    loaded = here.load(session.id)
    loaded.user["pref1"] = "mine"
    loaded.save()
    reads = whole_reads(monkeypatch)
    assert here.load(session.id).user["pref1"] == "mine"
    assert [sid for sid, _ in reads] == [session.id]  # its own small state only
    theirs = elsewhere.load(session.id)
    theirs.user["pref2"] = "theirs"
    theirs.save()
    user = here.load(session.id).user
    assert (user["pref1"], user["pref2"]) == ("mine", "theirs")


def test_the_async_store_shares_the_kept_states(here: Store) -> None:
    session = saved(here)

    async def turn() -> tuple[Any, Any]:
        loaded = await here.aload(session.id)
        loaded["key1"] = "async"
        await here.asave(loaded)
        again = await here.aload(session.id)
        return again["key1"], kept(here).get(session.id)

    value, state = asyncio.run(turn())
    assert value == "async"
    assert state is not None
    assert state.revision == 2  # the async save's, applied to what the async load kept


# Steps two processes take on one large session, in any order: after each, a load in the
# process that keeps states sees what a load that keeps nothing sees.
_STEPS = st.lists(
    st.tuples(
        st.sampled_from(["here", "elsewhere"]),
        st.sampled_from(["set", "delete", "ttl", "advance", "recreate"]),
        st.integers(0, LARGE + 3),
    ),
    min_size=1,
    max_size=8,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=_STEPS)
def test_a_kept_state_loads_as_the_stored_state(
    url: str, clock: FakeClock, steps: list[tuple[str, str, int]]
) -> None:
    stores = {"here": Store(url, clock=clock), "elsewhere": Store(url, clock=clock)}
    fresh = Store(url, clock=clock)
    try:
        session = stores["here"].create()
        session.update({f"key{i}": i for i in range(LARGE)})
        session.save()
        sid = session.id
        for who, step, n in steps:
            store = stores[who]
            loaded = store.load(sid)
            assert loaded is not None
            if step == "set":
                loaded[f"key{n}"] = f"{who} {n}"
            elif step == "delete":
                loaded.pop(f"key{n}", None)
            elif step == "ttl":
                loaded.set(f"key{n}", "brief", ttl=5)
            elif step == "advance":
                clock.advance(3)
            else:
                store.delete(loaded)
                loaded = store.create(session_id=sid)
                loaded.update({f"key{i}": -i for i in range(LARGE - n % 3)})
            loaded.save()
            kept(fresh).clear()
            expected = dict(fresh.load(sid))
            assert dict(stores["here"].load(sid)) == expected
            assert dict(stores["elsewhere"].load(sid)) == expected
    finally:
        for store in (*stores.values(), fresh):
            store.close()


def test_a_large_parent_state_is_kept_for_its_sub_sessions(
    here: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = saved(here)
    child = parent.child("notes")
    child["n"] = 1
    child.save()
    here.load(child.id)
    reads = whole_reads(monkeypatch)
    loaded = here.load(child.id)
    assert (loaded["n"], loaded["key5"]) == (1, 5)  # the parent's state, inherited
    assert [sid for sid, _ in reads] == [child.id]  # the child's own small state only


def test_threads_saving_one_large_session_lose_nothing(here: Store) -> None:
    """One process, four threads, each loading the session and saving its own keys: every
    load sees a state Redis had, and no save is lost."""
    session = saved(here)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(15):
                loaded = here.load(session.id)
                assert len(loaded) >= LARGE
                loaded[f"t{n}-{i}"] = i
                loaded.save()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    through_kept = dict(here.load(session.id))
    kept(here).clear()
    stored = dict(here.load(session.id))
    assert through_kept == stored
    assert sum(key.startswith("t") for key in stored) == 60
