"""store.subscribe / store.asubscribe: every backend yields each committed change, live.

Waits are bounded (`wait=` seconds) and end as soon as the change arrives; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from statemw import Session, Store
from statemw.changes import Change, Changes
from tests.support import FakeClock, store_url

WAIT = 10.0  # upper bound for a change to arrive; passing runs take milliseconds


def saved(store: Store) -> Session:
    session = store.create()
    session["k"] = 0
    session.save()
    return session


def test_a_save_after_subscribing_is_yielded(store: Store) -> None:
    session = saved(store)
    with store.subscribe(session.id) as changes:
        session["cart"] = ["book"]
        session.add_message("user", "hi")
        session.save()
        change = changes.get(WAIT)
    assert change == Change(session.id, 2, 1, ("cart",))


def test_each_commit_is_one_change_in_order(store: Store) -> None:
    session = saved(store)
    with store.subscribe(session.id) as changes:
        for n in range(1, 4):
            session["k"] = n
            session.save()
        received = [changes.get(WAIT) for _ in range(3)]
    assert [c.revision if c else None for c in received] == [2, 3, 4]


def test_a_deleted_session_says_so(store: Store) -> None:
    session = saved(store)
    sid = session.id
    with store.subscribe(sid) as changes:
        store.delete(session)
        change = changes.get(WAIT)
    assert change is not None
    assert change.deleted


def test_no_change_within_the_wait_gives_none(store: Store) -> None:
    session = saved(store)
    with store.subscribe(session.id) as changes:
        started = time.monotonic()
        assert changes.get(0.2) is None
        assert time.monotonic() - started < WAIT


def test_iteration_ends_after_the_timeout_without_changes(store: Store) -> None:
    session = saved(store)
    seen: list[Change] = []
    with store.subscribe(session.id, timeout=0.3) as changes:
        session["k"] = 1
        session.save()
        seen.extend(changes)
    assert [c.revision for c in seen] == [2]


def test_a_save_by_another_thread_wakes_a_waiting_listener(store: Store) -> None:
    session = saved(store)
    with store.subscribe(session.id) as changes:
        started = threading.Event()

        def device() -> None:
            started.wait(WAIT)
            other = store.load(session.id)
            other["from"] = "phone"
            other.save()

        thread = threading.Thread(target=device)
        thread.start()
        started.set()
        change = changes.get(WAIT)
        thread.join(WAIT)
    assert change is not None
    assert change.keys == ("from",)


def test_a_save_through_another_store_on_the_same_url_is_seen(
    backend_kind: str, tmp_path: Path, clock: FakeClock
) -> None:
    """Another Store object stands in for another process or server."""
    if backend_kind == "memory":
        pytest.skip("two memory:// stores are two separate stores")
    url = store_url(backend_kind, tmp_path)
    mine, theirs = Store(url, clock=clock), Store(url, clock=clock)
    try:
        session = saved(mine)
        with mine.subscribe(session.id) as changes:
            other = theirs.load(session.id)
            other["k"] = 1
            other.add_message("user", "from the laptop")
            other.save()
            change = changes.get(WAIT)
        assert change == Change(session.id, 2, 1, ("k",))
    finally:
        mine.close()
        theirs.close()


@pytest.mark.anyio
async def test_async_listeners_get_the_same_changes(store: Store) -> None:
    session = saved(store)
    async with store.asubscribe(session.id) as changes:
        session["cart"] = ["book"]
        await session.asave()
        change = await changes.get(WAIT)
    assert change == Change(session.id, 2, 0, ("cart",))


@pytest.mark.anyio
async def test_async_iteration_ends_after_the_timeout(store: Store) -> None:
    session = saved(store)
    async with store.asubscribe(session.id, timeout=0.3) as changes:
        session["k"] = 1
        await session.asave()
        revisions = [c.revision async for c in changes]
    assert revisions == [2]


@pytest.mark.anyio
async def test_a_save_in_a_worker_thread_wakes_an_async_listener(store: Store) -> None:
    session = saved(store)

    def device() -> None:
        other = store.load(session.id)
        other["from"] = "phone"
        other.save()

    async with store.asubscribe(session.id) as changes:
        waiting = asyncio.ensure_future(changes.get(WAIT))
        await asyncio.to_thread(device)
        change = await waiting
    assert change is not None
    assert change.keys == ("from",)


@pytest.mark.anyio
async def test_a_waiting_async_listener_can_be_cancelled(store: Store) -> None:
    session = saved(store)
    async with store.asubscribe(session.id) as changes:
        waiting = asyncio.ensure_future(changes.get(None))
        await asyncio.sleep(0)  # let it start waiting
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(waiting, WAIT)
        session["k"] = 1
        await session.asave()
        change = await changes.get(WAIT)  # still usable after the cancelled wait
    assert change is not None
    assert change.revision == 2


def saves_heard(session: Session, changes: Changes, *values: int) -> list[int | None]:
    """Save each value under "k"; the revisions the subscription then yields, one per save."""
    for value in values:
        session["k"] = value
        session.save()
    return [c.revision if c else None for c in (changes.get(WAIT) for _ in values)]


def test_a_subscriber_to_a_session_saved_before_anyone_listened_sees_the_next_save(
    store: Store,
) -> None:
    session = saved(store)
    for n in range(1, 4):
        session["k"] = n
        session.save()  # nobody listens yet
    with store.subscribe(session.id) as changes:
        session["k"] = 4
        session.save()
        assert changes.get(WAIT) == Change(session.id, 5, 0, ("k",))


def test_a_subscriber_to_a_session_not_stored_yet_sees_it_created_then_saved(store: Store) -> None:
    session = store.create()
    with store.subscribe(session.id) as changes:
        assert saves_heard(session, changes, 1, 2) == [1, 2]


def test_a_session_created_again_under_its_id_after_expiring_reaches_its_subscriber(
    backend_kind: str, tmp_path: Path, clock: FakeClock
) -> None:
    store = Store(store_url(backend_kind, tmp_path), clock=clock, idle=60)
    try:
        first = store.create(session_id="chat-again")
        first["k"] = 0
        first.save()
        with store.subscribe("chat-again") as changes:
            first["k"] = 1
            first.save()
            assert changes.get(WAIT) == Change("chat-again", 2, 0, ("k",))
            clock.advance(61)
            again = store.create(session_id="chat-again")
            assert saves_heard(again, changes, 10, 11) == [1, 2]
    finally:
        store.close()


def test_a_later_subscriber_sees_changes_after_an_earlier_one_left(store: Store) -> None:
    session = saved(store)
    with store.subscribe(session.id) as first:
        session["k"] = 1
        session.save()
        assert first.get(WAIT) is not None
    with store.subscribe(session.id) as second, store.subscribe(session.id) as third:
        session["k"] = 2
        session.save()
        assert second.get(WAIT) == third.get(WAIT) == Change(session.id, 3, 0, ("k",))
