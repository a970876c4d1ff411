"""A Redis Cluster of three masters (started here from redis-server) under the contract's core.

Every key of a session tree shares the root's hash tag, so saves and loads stay single-slot
scripts; rename copies keys to the new id's slot, then deletes the old ones.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from statemw import Session, Store
from statemw.changes import Change
from statemw.errors import SessionNotFound
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


def test_subscribe_on_a_cluster(cstore: Store) -> None:
    session = cstore.create()
    session.save()
    with cstore.subscribe(session.id) as changes:
        session["k"] = 1
        session.save()
        assert changes.get(WAIT) == Change(session.id, 2, 0, ("k",))


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
