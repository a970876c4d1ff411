"""Two devices (or twenty) saving one session at once lose nothing: threads and processes."""

from __future__ import annotations

import multiprocessing
import threading
from collections import defaultdict
from typing import Any

import statemw.backends
import statemw.store
from statemw import Store

WRITERS = 8
TURNS = 25


def take_turns(url: str, session_id: str, writer: int, turns: int) -> None:
    """One device: load, add a message, set its own key, save; `turns` times."""
    store = Store(url)
    for turn in range(turns):
        session = store.load(session_id)
        session.add_message("user", f"{writer}:{turn}")
        session[f"writer-{writer}"] = turn
        session.save()
    store.close()


def assert_nothing_lost(store: Store, session_id: str, writers: int, turns: int) -> None:
    session = store.load(session_id)
    contents = [m["content"] for m in session.messages]
    assert len(contents) == writers * turns
    by_writer: defaultdict[str, list[int]] = defaultdict(list)
    for content in contents:
        writer, turn = content.split(":")
        by_writer[writer].append(int(turn))
    assert all(turns_seen == list(range(turns)) for turns_seen in by_writer.values())
    assert dict(session) == {f"writer-{w}": turns - 1 for w in range(writers)}


def test_threads_saving_one_session_keep_every_message_and_key(store: Store) -> None:
    session = store.create()
    session.save()
    start = threading.Barrier(WRITERS)
    errors: list[BaseException] = []

    def device(writer: int) -> None:
        try:
            start.wait()
            for turn in range(TURNS):
                mine = store.load(session.id)
                mine.add_message("user", f"{writer}:{turn}")
                mine[f"writer-{writer}"] = turn
                mine.save()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=device, args=(w,)) for w in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert_nothing_lost(store, session.id, WRITERS, TURNS)


def test_processes_sharing_a_diskcache_directory_keep_every_message(tmp_path: Any) -> None:
    url = f"diskcache://{tmp_path / 'shared'}"
    store = Store(url)
    session = store.create()
    session.save()
    ctx = multiprocessing.get_context("spawn")
    processes = [ctx.Process(target=take_turns, args=(url, session.id, w, 50)) for w in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=90)
        assert process.exitcode == 0
    assert_nothing_lost(store, session.id, 4, 50)


def test_threads_first_using_a_store_at_once_share_one_backend(monkeypatch: Any) -> None:
    opened: list[str] = []
    gate = threading.Barrier(8)
    original = statemw.backends.open_backend

    def counted_open(url: str, options: dict[str, Any]) -> Any:
        opened.append(url)
        return original(url, options)

    monkeypatch.setattr(statemw.store, "open_backend", counted_open)
    store = Store("memory://")

    def first_use() -> None:
        gate.wait()
        store.create().save()

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert opened == ["memory://"]
    assert len(list(store.session_ids())) == 8  # nothing written through a backend not kept
