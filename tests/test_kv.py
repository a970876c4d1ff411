"""The key-value layout's pure parts (statemw.backends.kv), below the backends that use it."""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statemw import Store
from statemw.backends.kv import KeptByKey, KVBackend, appended
from statemw.codec import decode_header, pack, unpack
from statemw.records import Entry, entries_of
from tests.support import FakeClock

records = st.lists(st.binary(max_size=300), max_size=40)


@given(records, st.lists(st.binary(max_size=300), min_size=1, max_size=40))
def test_appending_to_a_chunk_gives_the_bytes_of_the_whole_chunk_packed(
    stored: list[bytes], added: list[bytes]
) -> None:
    assert appended(pack(stored), len(stored), added) == pack(stored + added)


def test_a_chunk_past_sixty_five_thousand_records_keeps_its_length() -> None:
    stored = [b"r"] * 70_000
    assert appended(pack(stored), len(stored), [b"new"]) == pack([*stored, b"new"])


@given(records)
def test_a_chunk_holding_other_than_the_counted_records_is_not_appended_to(
    stored: list[bytes],
) -> None:
    assert appended(pack(stored), len(stored) + 1, [b"x"]) is None
    if stored:
        assert appended(pack(stored), len(stored) - 1, [b"x"]) is None


def test_bytes_that_are_not_an_array_are_not_appended_to() -> None:
    assert appended(pack({"not": "a list"}), 1, [b"x"]) is None
    assert appended(b"", 0, [b"x"]) is None
    assert appended(b"\xdc\x00", 0, [b"x"]) is None  # a cut-off length


# -- message chunks kept unpacked, headers kept decoded (KeptByKey) -------------------------------


def test_a_chunk_read_again_hands_out_the_same_record_bytes() -> None:
    store, sid = conversation(5)
    backend = cast(KVBackend, store.backend)
    first, again = backend.read_messages(sid, 0, 5), backend.read_messages(sid, 0, 5)
    assert first == again
    assert all(a is b for a, b in zip(first, again, strict=True))


def test_the_chunk_a_save_grew_is_read_without_unpacking_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, sid = conversation(5)
    store.load(sid).get_history()  # the chunk as stored now is read once
    session = store.load(sid)
    session.add_message("user", "one more")
    session.save()
    chunks: list[bytes] = []

    def counting(data: bytes) -> Any:
        chunks.append(data)
        return unpack(data)

    monkeypatch.setattr("statemw.backends.kv.unpack", counting)
    assert len(cast(KVBackend, store.backend).read_messages(sid, 0, 6)) == 6
    assert chunks == []


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 70), min_size=1, max_size=6))
def test_saves_of_any_size_read_back_the_same_with_or_without_kept_chunks(
    batches: list[int],
) -> None:
    store = Store("memory://")
    session = store.create()
    sent: list[str] = []
    for size in batches:
        for _ in range(size):
            sent.append(f"message {len(sent)}")
            session.add_message("user", sent[-1])
        session.save()
        backend = cast(KVBackend, store.backend)
        fresh = KVBackend(backend.kv)  # the same data, nothing kept unpacked
        kept = backend.read_messages(session.id, 0, len(sent))
        assert kept == fresh.read_messages(session.id, 0, len(sent))
        assert [m["content"] for m in store.load(session.id).messages] == sent


def test_what_is_kept_by_key_starts_afresh_past_its_budget() -> None:
    kept: KeptByKey[str] = KeptByKey(100)
    kept.keep("a", b"a" * 60, "a")
    kept.keep("b", b"b" * 30, "b")
    kept.keep("c", b"c" * 20, "c")
    assert list(kept) == ["c"]
    assert kept.held == 20


def test_what_is_kept_again_under_a_key_replaces_what_it_held() -> None:
    kept: KeptByKey[str] = KeptByKey(100)
    for n in range(10):
        kept.keep("chunk", bytes(50), f"version {n}")
    assert kept == {"chunk": (bytes(50), "version 9")}
    assert kept.held == 50


def test_a_chunk_changed_under_the_backend_is_read_as_stored() -> None:
    store, sid = conversation(3)
    backend = cast(KVBackend, store.backend)
    kept = backend.read_messages(sid, 0, 3)  # now kept, under the chunk's key
    other, other_sid = conversation(3)
    written = cast(KVBackend, other.backend).read_messages(other_sid, 0, 3)
    backend.kv.set(f"m:{sid}:0", pack(written))  # as another process would write it
    assert written != kept
    assert backend.read_messages(sid, 0, 3) == written


def kept_keys_naming(backend: KVBackend, sid: str) -> list[str]:
    """The keys of the chunks, headers and state buckets the backend keeps that name `sid`."""
    return [k for k in (*backend._unpacked, *backend._headers, *backend._buckets) if sid in k]


def with_keys(store: Store, sid: str, count: int) -> None:
    """`count` state keys more in a stored session: past INLINE_KEYS they live in buckets."""
    session = store.load(sid)
    session.update({f"key{i}": f"value {i}" for i in range(count)})
    session.save()


def test_a_deleted_session_leaves_nothing_kept_in_memory() -> None:
    store, sid = conversation(3)
    with_keys(store, sid, 200)
    assert store.load(sid)["key7"] == "value 7"  # its buckets are kept decoded now
    child = store.load_child(store.load(sid), "draft")
    child.add_message("user", "a draft")
    child.save()
    backend = cast(KVBackend, store.backend)
    backend.read_messages(child.id, 0, 1)
    backend.read_messages(sid, 0, 3)
    assert store.delete(sid)
    assert kept_keys_naming(backend, sid) == []


def test_a_renamed_session_leaves_nothing_kept_under_its_old_id() -> None:
    store, sid = conversation(3)
    with_keys(store, sid, 200)
    session = store.load(sid)
    session.get_history()
    new_id = store.rotate(session)
    backend = cast(KVBackend, store.backend)
    assert kept_keys_naming(backend, sid) == []
    renamed = store.load(new_id)
    assert (len(renamed.messages), renamed["key199"]) == (3, "value 199")


def test_a_large_state_saved_and_read_again_decodes_only_the_buckets_the_save_rewrote(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, sid = conversation(1)
    with_keys(store, sid, 1000)
    store.load(sid)  # every bucket decoded, and kept
    session = store.load(sid)
    session["key3"] = "changed"
    decoded: list[int] = []

    def counting(wires: Iterable[tuple[str, Any]]) -> dict[str, Entry]:
        entries = entries_of(wires)
        decoded.append(len(entries))
        return entries

    monkeypatch.setattr("statemw.backends.kv.entries_of", counting)
    session.save()
    loaded = store.load(sid)
    assert (len(loaded), loaded["key3"], loaded["key999"]) == (1000, "changed", "value 999")
    assert len(decoded) == 1  # the bucket that holds key3, once
    assert decoded[0] < 1000


def test_a_bucket_another_process_rewrote_is_read_as_stored(tmp_path: Path) -> None:
    store, other = Store(f"diskcache://{tmp_path}/s"), Store(f"diskcache://{tmp_path}/s")
    session = store.create()
    session.update({f"key{i}": f"value {i}" for i in range(1000)})
    session.save()
    assert store.load(session.id)["key5"] == "value 5"  # every bucket kept
    elsewhere = other.load(session.id)
    elsewhere["key5"] = "from elsewhere"
    elsewhere.save()
    assert store.load(session.id)["key5"] == "from elsewhere"
    store.close()
    other.close()


def test_a_bucket_read_again_is_shared_and_a_load_does_not_change_it() -> None:
    store, sid = conversation(1)
    with_keys(store, sid, 200)
    backend = cast(KVBackend, store.backend)
    first = store.load(sid)
    first["key0"] = "changed, not saved"
    del first["key1"]
    again = store.load(sid)
    assert (again["key0"], again["key1"]) == ("value 0", "value 1")
    assert backend.read_header(sid, store.clock()) == KVBackend(backend.kv).read_header(
        sid, store.clock()
    )


def test_the_header_a_save_wrote_is_read_without_decoding_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, sid = conversation(3)
    session = store.load(sid)
    session["city"] = "Berlin"
    session.save()
    decoded: list[bytes] = []

    def counting(data: bytes, *, session_id: str) -> list[Any]:
        decoded.append(data)
        return decode_header(data, session_id=session_id)

    monkeypatch.setattr("statemw.backends.kv.decode_header", counting)
    loaded = store.load(sid)
    assert (loaded["city"], len(loaded.messages)) == ("Berlin", 3)
    assert decoded == []


def test_a_header_read_again_is_a_copy_a_commit_may_change() -> None:
    store, sid = conversation(2)
    backend = cast(KVBackend, store.backend)
    first = backend.read_header(sid, store.clock())
    assert first is not None
    assert isinstance(first.state, dict)
    first.state.clear()
    first.children.append("stray")
    first.message_count = 99
    again = backend.read_header(sid, store.clock())
    assert again is not None
    assert (again.message_count, again.children) == (2, [])
    assert again == KVBackend(backend.kv).read_header(sid, store.clock())


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from("abcdef"), st.integers(0, 3)), min_size=1, max_size=8),
    st.sampled_from([0, 200]),
)
def test_saves_read_back_the_same_headers_with_or_without_kept_ones(
    writes: list[tuple[str, int]], filler: int
) -> None:
    store = Store("memory://")
    session = store.create()
    session["first"] = 0
    session.update({f"filler{i}": i for i in range(filler)})  # 200: the state is in buckets
    session.save()
    backend = cast(KVBackend, store.backend)
    for key, value in writes:
        session = store.load(session.id)
        if value:
            session[key] = value
        else:
            session.pop(key, None)
        session.add_message("user", f"{key}={value}")
        session.save()
        now = store.clock()
        assert backend.read_header(session.id, now) == KVBackend(backend.kv).read_header(
            session.id, now
        )


def conversation(count: int) -> tuple[Store, str]:
    store = Store("memory://")
    session = store.create()
    for i in range(count):
        session.add_message("user", f"message {i}")
    session.save()
    return store, session.id


# -- a large state's answer, kept for the header it was read under -------------------------------


def bucket_reads(backend: KVBackend, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The numbers of the buckets `backend` reads from now on."""
    reads: list[int] = []
    read = KVBackend._bucket

    def counting(self: KVBackend, session_id: str, n: int) -> Any:
        reads.append(n)
        return read(self, session_id, n)

    monkeypatch.setattr(KVBackend, "_bucket", counting)
    return reads


@pytest.mark.parametrize("url", ["memory://", "diskcache://{tmp}/s"])
def test_a_large_state_loaded_again_under_the_same_header_reads_no_bucket(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(url.format(tmp=tmp_path))
    session = store.create()
    session.update({f"key{i}": f"value {i}" for i in range(1000)})
    session.save()
    store.load(sid := session.id)
    reads = bucket_reads(cast(KVBackend, store.backend), monkeypatch)
    again = store.load(sid)
    again["key3"] = "changed"
    again.save()  # this process's commit hands on the buckets it rewrote
    loaded = store.load(sid)
    assert (reads, len(loaded), loaded["key3"], loaded["key4"]) == ([], 1000, "changed", "value 4")
    store.close()


def test_a_commit_elsewhere_makes_the_next_load_read_the_buckets(tmp_path: Path) -> None:
    store, other = Store(f"diskcache://{tmp_path}/s"), Store(f"diskcache://{tmp_path}/s")
    session = store.create()
    session.update({f"key{i}": f"value {i}" for i in range(1000)})
    session.save()
    store.load(session.id)
    elsewhere = other.load(session.id)
    elsewhere.add_message("user", "no state changed, the header did")
    elsewhere["key5"] = "from elsewhere"
    elsewhere.save()
    loaded = store.load(session.id)
    assert (loaded["key5"], len(loaded.messages)) == ("from elsewhere", 1)
    store.close()
    other.close()


@pytest.mark.parametrize("url", ["memory://", "diskcache://{tmp}/s"])
def test_a_key_purge_removed_stays_gone_from_the_answer_kept(url: str, tmp_path: Path) -> None:
    clock = FakeClock()
    store = Store(url.format(tmp=tmp_path), clock=clock)
    session = store.create()
    session.update({f"key{i}": f"value {i}" for i in range(1000)})
    session.set("brief", "gone soon", ttl=10)
    session.save()
    assert store.load(session.id)["brief"] == "gone soon"
    clock.advance(11)
    store.purge()  # rewrites the bucket without the key; the header stays as it was
    loaded = store.load(session.id)
    assert ("brief" in loaded, len(loaded)) == (False, 1000)
    store.close()


@pytest.mark.parametrize("seed", range(4))
def test_saves_from_two_processes_in_any_order_are_what_each_next_load_reads(
    seed: int, tmp_path: Path
) -> None:
    rng = random.Random(seed)
    stores = [Store(f"diskcache://{tmp_path}/s"), Store(f"diskcache://{tmp_path}/s")]
    session = stores[0].create()
    expected = {f"key{i}": i for i in range(600)}
    session.update(expected)
    session.save()
    for _ in range(40):
        writer = stores[rng.randrange(2)].load(session.id)
        for key in rng.sample(sorted(expected), rng.randrange(1, 4)):
            if rng.random() < 0.3:
                del writer[key]
                del expected[key]
            else:
                writer[key] = expected[key] = rng.randrange(10**6)
        if rng.random() < 0.2:
            new_key = f"new{rng.randrange(10**6)}"
            writer[new_key] = expected[new_key] = 0
        writer.save()
        for store in stores:
            assert dict(store.load(session.id)) == expected
    for store in stores:
        store.close()


def test_saves_in_a_row_that_change_ever_more_buckets_are_what_loads_read() -> None:
    rng = random.Random(7)
    store = Store("memory://")
    session = store.create()
    expected: dict[str, Any] = {f"key{i}": i for i in range(10_000)}  # 256 buckets
    session.update(expected)
    session.save()
    for turn in range(40):  # past an eighth of the buckets changed since the union
        writer = store.load(session.id)
        key = f"key{rng.randrange(10_000)}"
        if key in expected and turn % 3 == 0:
            del writer[key]
            del expected[key]
        else:
            writer[key] = expected[key] = turn
        writer.save()
        assert dict(store.load(session.id)) == expected
