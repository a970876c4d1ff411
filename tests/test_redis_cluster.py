"""A Redis Cluster of three masters (started here from redis-server) under the contract's core.

Every key of a session tree shares the root's hash tag, so saves and loads stay single-slot
scripts; rename copies keys to the new id's slot, then deletes the old ones.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
import redis

from statemw import Session, Store
from statemw.backends.redis import ops
from statemw.backends.redis.client import RedisBackend
from statemw.backends.redis.lua import CLUSTER_SCRIPTS, SCRIPTS
from statemw.changes import Change
from statemw.errors import SessionNotFound, StoreUnavailable
from tests.redis_server import STARTUP_SECONDS, RedisServer, free_cluster_port
from tests.support import FakeClock

WAIT = 10.0


@pytest.fixture(scope="module")
def cluster_url() -> Iterator[str]:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.fail("the cluster test needs redis-server and redis-cli")
    nodes = [
        RedisServer(
            free_cluster_port(), "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"
        )
        for _ in range(3)
    ]
    try:
        for node in nodes:
            node.start()
        addresses = [f"127.0.0.1:{n.port}" for n in nodes]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *addresses, "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + STARTUP_SECONDS
        for node in nodes:
            client = redis.Redis(port=node.port)
            while b"cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):  # type: ignore[no-untyped-call]
                assert time.monotonic() < deadline, "cluster did not become ready"
                time.sleep(0.05)
            client.close()
        yield f"redis+cluster://{addresses[0]}"
    finally:
        for node in nodes:
            node.remove()


@pytest.fixture
def cstore(cluster_url: str, clock: FakeClock) -> Iterator[Store]:
    store = Store(cluster_url, key_prefix=f"c{uuid.uuid4().hex[:8]}:", clock=clock)
    yield store
    store.close()


def test_create_save_load_and_append(cstore: Store) -> None:
    session = cstore.create(user_id="harsh")
    session["location"] = "Bangalore"
    session.add_message("user", "Find flights to Berlin")
    session.save()
    again = cstore.load(session.id)
    again.add_message("assistant", "When?")
    again.save()
    final = cstore.load(session.id)
    assert final["location"] == "Bangalore"
    assert [m["content"] for m in final.messages] == ["Find flights to Berlin", "When?"]


def test_user_state_lives_in_its_own_slot_and_is_shared(cstore: Store) -> None:
    first = cstore.create(user_id="harsh")
    first.user["tz"] = "Asia/Kolkata"
    first.save()
    second = cstore.create(user_id="harsh")
    second.save()
    assert cstore.load(second.id).user["tz"] == "Asia/Kolkata"
    assert cstore.user_sessions("harsh") == [first.id, second.id]


def test_a_child_reads_through_to_its_parent(cstore: Store) -> None:
    session = cstore.create()
    session["location"] = "Bangalore"
    flights = session.child("flights")
    flights["to"] = "Berlin"
    session.save()
    again = cstore.load(session.id).child("flights")
    assert again["to"] == "Berlin"
    assert again.get("location") == "Bangalore"


def test_rotate_moves_the_tree_to_another_slot(cstore: Store) -> None:
    session = cstore.create(user_id="harsh")
    session["k"] = "v"
    session.add_message("user", "hi")
    session.child("flights")["to"] = "Berlin"
    session.save()
    old = session.id
    new = session.rotate()
    assert cstore.get(old) is None
    moved = cstore.load(new)
    assert moved["k"] == "v"
    assert len(moved.messages) == 1
    assert moved.child("flights")["to"] == "Berlin"
    assert cstore.user_sessions("harsh") == [new]


def test_forget_user_removes_everything(cstore: Store) -> None:
    sessions = [cstore.create(user_id="harsh") for _ in range(3)]
    for s in sessions:
        s.user["tz"] = "IST"
        s.save()
    assert cstore.forget_user("harsh") == 3
    assert all(cstore.get(s.id) is None for s in sessions)
    assert cstore.user_sessions("harsh") == []
    assert dict(cstore.user_state("harsh")) == {}


def test_delete_and_purge(cstore: Store, clock: FakeClock) -> None:
    kept, expiring = Session.create(store=cstore), cstore.create()
    kept.save()
    expiring.save()
    assert cstore.delete(kept)
    with pytest.raises(SessionNotFound):
        cstore.load(kept.id)
    clock.advance(31 * 86400)
    assert cstore.purge() == 1


def _masters(store: Store) -> list[redis.Redis]:
    """A plain client on each master of the cluster."""
    client = _backend(store).client
    return [client.get_redis_connection(node) for node in client.get_primaries()]


def _pubsub(master: redis.Redis, what: str) -> list[bytes]:
    return list(master.execute_command("PUBSUB", what))  # type: ignore[no-untyped-call]


def _backend(store: Store) -> RedisBackend:
    backend = store.backend
    assert isinstance(backend, RedisBackend)
    return backend


def _one_session_per_shard(store: Store) -> list[Session]:
    """Saved sessions, one whose slot is on each master."""
    backend = _backend(store)
    client, layout = backend.client, backend.layout
    by_node: dict[str, Session] = {}
    while len(by_node) < len(client.get_primaries()):
        session = store.create()
        node = client.get_node_from_key(layout.header(session.id)).name
        by_node.setdefault(node, session)
    for session in by_node.values():
        session.save()
    return list(by_node.values())


def test_subscribe_uses_sharded_pub_sub_in_every_shard(cstore: Store) -> None:
    masters = _masters(cstore)
    for session in _one_session_per_shard(cstore):
        channel = _backend(cstore).layout.channel(session.id).encode()
        with cstore.subscribe(session.id) as changes:
            session["k"] = 1
            session.save()
            assert changes.get(WAIT) == Change(session.id, 2, 0, ("k",))
            # the channel is a shard channel of exactly one master, and no classic channel
            holders = [m for m in masters if channel in _pubsub(m, "SHARDCHANNELS")]
            assert len(holders) == 1
            assert all(not _pubsub(m, "CHANNELS") for m in masters)
            cstore.delete(session.id)
            assert changes.get(WAIT) == Change(session.id, 0, 0, deleted=True)


@pytest.mark.anyio
async def test_asubscribe_uses_sharded_pub_sub_in_every_shard(cstore: Store) -> None:
    for session in _one_session_per_shard(cstore):
        async with cstore.asubscribe(session.id) as changes:
            session.add_message("user", "hi")
            await session.asave()
            assert await changes.get(WAIT) == Change(session.id, 2, 1, ())
    await cstore.aclose()


def test_a_subscriber_hears_each_save_in_every_shard(cstore: Store) -> None:
    """Changes stay in the session's shard (SPUBLISH): a subscriber hears each save of a
    session saved before it listened, and of one not stored yet, in every shard."""
    for session in _one_session_per_shard(cstore):  # saved before anyone listened
        with cstore.subscribe(session.id) as changes:
            for n in (1, 2):
                session["k"] = n
                session.save()
            assert [changes.get(WAIT), changes.get(WAIT)] == [
                Change(session.id, 2, 0, ("k",)),
                Change(session.id, 3, 0, ("k",)),
            ]
        fresh = cstore.create()
        with cstore.subscribe(fresh.id) as changes:
            for n in (1, 2):
                fresh["k"] = n
                fresh.save()
            received = [changes.get(WAIT), changes.get(WAIT)]
            assert [c.revision if c else None for c in received] == [1, 2]


@pytest.mark.anyio
async def test_the_async_client_works_on_a_cluster(cstore: Store) -> None:
    session = cstore.create(user_id="harsh")
    session.add_message("user", "hi")
    async with cstore.asubscribe(session.id) as changes:
        await session.asave()
        change = await changes.get(WAIT)
    again = await cstore.aload(session.id)
    assert len(again.messages) == 1
    assert change is not None
    assert change.revision == 1
    await cstore.aclose()


def test_cluster_scripts_publish_only_with_spublish() -> None:
    for name, source in SCRIPTS.items():
        assert "'PUBLISH'" not in CLUSTER_SCRIPTS[name]
        assert source.count("'PUBLISH'") == CLUSTER_SCRIPTS[name].count("'SPUBLISH'")
    assert "'SPUBLISH'" in CLUSTER_SCRIPTS["commit"]
    assert "'SPUBLISH'" in CLUSTER_SCRIPTS["delete"]


# -- a single failure anywhere leaves every stored session findable and forgettable -----------


class Failing:
    """Wraps a backend's `call`: the call numbered `at` fails, either before it reaches Redis
    ("lost": the command was never sent) or after ("reply": it ran, its reply was lost)."""

    def __init__(self, backend: RedisBackend, at: int = -1, mode: str = "lost") -> None:
        self.backend, self.at, self.mode = backend, at, mode
        self.calls: list[ops.RedisStep] = []
        self._call = backend.call

    def __call__(self, call: ops.RedisStep) -> Any:
        number = len(self.calls)
        self.calls.append(call)
        if number == self.at and self.mode == "lost":
            raise redis.exceptions.ConnectionError("injected: the shard is down")
        reply = self._call(call)
        if number == self.at:
            raise redis.exceptions.ConnectionError("injected: the reply was lost")
        return reply


@contextmanager
def failing(store: Store, at: int = -1, mode: str = "lost") -> Iterator[Failing]:
    backend = _backend(store)
    fault = Failing(backend, at, mode)
    backend.call = fault  # type: ignore[method-assign]
    try:
        yield fault
    finally:
        del backend.call


def _stored(store: Store, session_id: str) -> bool:
    backend = _backend(store)
    return bool(backend.client.exists(backend.layout.header(session_id)))


def _calls_of(store: Store, action: Callable[[], object]) -> int:
    with failing(store) as fault:
        action()
    return len(fault.calls)


def _each_single_failure(
    store: Store, setup: Callable[[str], Callable[[], object]]
) -> Iterator[tuple[str, int, str]]:
    """Run the action `setup(user)` returns once per call it makes and failure mode, failing
    that call; yields (user, call number, mode) after each run for the caller to check."""
    calls = _calls_of(store, setup(f"u-{uuid.uuid4().hex[:8]}"))
    for at in range(calls):
        for mode in ("lost", "reply"):
            user = f"u-{uuid.uuid4().hex[:8]}"
            action = setup(user)
            with failing(store, at, mode), contextlib.suppress(StoreUnavailable):
                action()
            yield user, at, mode


def _listed_and_forgettable(store: Store, user: str, session_ids: Sequence[str]) -> None:
    stored = [sid for sid in session_ids if _stored(store, sid)]
    assert set(stored) <= set(store.user_sessions(user))
    store.forget_user(user)
    assert not [sid for sid in session_ids if _stored(store, sid)]
    assert store.user_sessions(user) == []


def test_a_failed_create_never_strands_a_session(cstore: Store) -> None:
    made: dict[str, Session] = {}

    def setup(user: str) -> Callable[[], object]:
        made[user] = session = cstore.create(user_id=user)
        session["k"] = 1
        return session.save

    runs = 0
    for user, _, _ in _each_single_failure(cstore, setup):
        _listed_and_forgettable(cstore, user, [made[user].id])
        runs += 1
    # the user's index read (a user without a live session starts afresh), the index entry,
    # then the session: each lost or its reply lost
    assert runs == 6


def test_a_failed_rotate_never_strands_a_session(cstore: Store) -> None:
    ids: dict[str, list[str]] = {}

    def setup(user: str) -> Callable[[], object]:
        session = cstore.create(user_id=user)
        session.add_message("user", "hi")
        session.child("flights")["to"] = "Berlin"
        session.save()
        old = session.id

        def rotate() -> None:
            ids[user] = [old]
            try:
                session.rotate()
            finally:
                ids[user].append(session.id)

        return rotate

    for user, _, _ in _each_single_failure(cstore, setup):
        _listed_and_forgettable(cstore, user, ids[user])


def test_a_failed_delete_or_forget_can_be_finished(cstore: Store) -> None:
    ids: dict[str, list[str]] = {}

    def setup(user: str) -> Callable[[], object]:
        sessions = [cstore.create(user_id=user) for _ in range(2)]
        for s in sessions:
            s.user["tz"] = "IST"
            s.save()
        ids[user] = [s.id for s in sessions]
        return lambda: (cstore.delete(sessions[0].id), cstore.forget_user(user))

    for user, _, _ in _each_single_failure(cstore, setup):
        _listed_and_forgettable(cstore, user, ids[user])
        assert dict(cstore.user_state(user)) == {}


def _drop_from_index(store: Store, user: str, session_id: str) -> None:
    """What a failover that lost an acknowledged index write leaves behind."""
    backend = _backend(store)
    backend.client.zrem(backend.layout.user_index(user), session_id)


def test_a_load_puts_a_session_back_in_its_users_index(cstore: Store) -> None:
    session = cstore.create(user_id="lost")
    session.save()
    _drop_from_index(cstore, "lost", session.id)
    assert cstore.user_sessions("lost") == []
    cstore.load(session.id)
    assert cstore.user_sessions("lost") == [session.id]
    cstore.forget_user("lost")


def test_purge_puts_sessions_back_in_their_users_index(cstore: Store, clock: FakeClock) -> None:
    sessions = [cstore.create(user_id="lost") for _ in range(3)]
    for s in sessions:
        s.save()
        _drop_from_index(cstore, "lost", s.id)
        clock.advance(1)
    assert cstore.purge() == 0
    assert cstore.user_sessions("lost") == [s.id for s in sessions]
    cstore.forget_user("lost")


def test_forget_user_reaches_a_session_the_index_missed(cstore: Store, clock: FakeClock) -> None:
    missed, listed, other = (cstore.create(user_id=u) for u in ("gone", "gone", "kept"))
    for s in (missed, listed, other):
        s.save()
    _drop_from_index(cstore, "gone", missed.id)
    _drop_from_index(cstore, "kept", other.id)
    assert cstore.forget_user("gone") == 1
    with pytest.raises(SessionNotFound):  # no load returns it: this one deletes it
        cstore.load(missed.id)
    assert not _stored(cstore, missed.id)
    again = cstore.create(user_id="gone")  # the same user id, after the forget, is a new user
    again.save()
    assert cstore.user_sessions("gone") == [again.id]
    assert cstore.load(other.id).id == other.id  # another user's missed session is repaired
    assert cstore.user_sessions("kept") == [other.id]
    cstore.forget_user("gone")
    cstore.forget_user("kept")


def test_forget_user_reaches_a_missed_session_from_a_server_whose_clock_runs_ahead(
    cluster_url: str,
) -> None:
    """The forget marker is Redis's time, a session's created_at the app server's."""
    ahead = FakeClock(time.time() + 30)
    store = Store(cluster_url, key_prefix=f"c{uuid.uuid4().hex[:8]}:", clock=ahead)
    try:
        missed = store.create(user_id="gone")
        missed.save()
        _drop_from_index(store, "gone", missed.id)  # as a save racing the forget leaves it
        store.forget_user("gone")
        with pytest.raises(SessionNotFound):
            store.load(missed.id)
        assert not _stored(store, missed.id)
    finally:
        store.close()


def test_purge_deletes_a_forgotten_users_session_the_index_missed(cstore: Store) -> None:
    missed = cstore.create(user_id="gone")
    missed.add_message("user", "hi")
    missed.child("c")["k"] = 1
    missed.save()
    _drop_from_index(cstore, "gone", missed.id)
    cstore.forget_user("gone")
    assert cstore.purge() == 1
    backend = _backend(cstore)
    assert not list(backend.client.scan_iter(match=backend.layout.base(missed.id) + "*"))


def test_a_load_needs_only_its_own_shard_and_flags_missing_user_state(cstore: Store) -> None:
    session = cstore.create(user_id="far")
    session.user["tz"] = "IST"
    session["k"] = 1
    session.add_message("user", "hi")
    session.save()
    # every call to the user's slot fails, as when the user's shard is down
    user_slot = _backend(cstore).layout.base("~u:far")
    backend = _backend(cstore)
    real = backend.call

    def down(call: ops.RedisStep) -> Any:
        if isinstance(call, ops.Script):
            keys = list(call.keys)
        elif isinstance(call, ops.Command):
            keys = [str(call.args[1])]
        else:
            keys = []
        if any(k.startswith(user_slot) for k in keys):
            raise redis.exceptions.ConnectionError("injected: the user's shard is down")
        return real(call)

    backend.call = down  # type: ignore[method-assign]
    try:
        loaded = cstore.load(session.id)
        assert loaded.user_unavailable
        assert loaded["k"] == 1
        assert [m["content"] for m in loaded.messages] == ["hi"]
        with pytest.raises(StoreUnavailable, match="could not be read"):
            loaded.user.get("tz")
        loaded["k"] = 2
        loaded.add_message("assistant", "hello")
        loaded.save()  # the session's own save needs only its own shard
    finally:
        del backend.call
    again = cstore.load(session.id)
    assert not again.user_unavailable
    assert again.user["tz"] == "IST"
    assert again["k"] == 2
    assert len(again.messages) == 2
