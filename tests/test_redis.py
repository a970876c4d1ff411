"""What the Redis backend adds to the shared contract: layout, round trips, faults, processes.

The contract itself (tests/test_session.py and friends) runs on Redis through conftest's
`store` fixture; these tests pin down what only a Redis store can get wrong.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis
import redis.connection
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from statemw import Session, Store
from statemw.backends.redis import ops as redis_ops
from statemw.backends.redis.client import AsyncRedisBackend, RedisBackend
from statemw.codec import pack
from statemw.errors import ConfigurationError, CorruptRecord, StoreUnavailable
from statemw.records import Delta, SessionHeader, user_record_id
from tests.redis_server import RedisServer, append_worker, free_port, isolated_url
from tests.support import FakeClock, event_loop_outlives_its_run, recorded_calls


@pytest.fixture
def rstore(tmp_path: Path, clock: FakeClock) -> Iterator[Store]:
    store = Store(isolated_url(tmp_path.name), clock=clock)
    yield store
    store.close()


def backend_of(store: Store) -> RedisBackend:
    backend = store.backend
    assert isinstance(backend, RedisBackend)
    return backend


def raw(store: Store) -> redis.Redis:
    client: redis.Redis = backend_of(store).client
    return client


def saved_with_user(store: Store, user_id: str, **user_state: Any) -> Session:
    """A saved session of `user_id`, whose user state holds `user_state`."""
    session = store.create(user_id=user_id)
    session.user.update(user_state)
    session.save()
    return session


def count_round_trips(backend: RedisBackend, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record each call the backend sends (a script, a command or a whole pipeline)."""
    calls: list[str] = []
    original = backend.call

    def counting(call: redis_ops.RedisStep) -> Any:
        calls.append(type(call).__name__)
        return original(call)

    monkeypatch.setattr(backend, "call", counting)
    return calls


def test_every_key_of_a_session_tree_carries_the_root_hash_tag(rstore: Store) -> None:
    session = rstore.create(user_id="harsh")
    session["k"] = 1
    session.set("offer", 2, ttl=60)
    session.add_message("user", "hi")
    child = session.child("flights")
    child.add_message("user", "to Berlin")
    session.save()

    prefix = backend_of(rstore).layout.prefix
    client = raw(rstore)
    keys = {k.decode() for k in client.scan_iter(match=f"{prefix}{{{session.id}}}:*")}
    assert keys == {
        f"{prefix}{{{session.id}}}:{kind}:{sid}"
        for kind, sid in [
            ("h", session.id),
            ("m", session.id),
            ("x", session.id),
            ("h", child.id),
            ("m", child.id),
        ]
    }
    assert len({key_slot(k.encode()) for k in keys}) == 1


def test_a_save_and_a_load_are_one_round_trip_each(
    rstore: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = saved_with_user(rstore, "harsh", tz="IST")
    calls = count_round_trips(backend_of(rstore), monkeypatch)

    again = rstore.load(session.id)
    assert calls == ["Transaction"]  # header, window, parents' headers and the user's, together
    again["k"] = "v"
    again.add_message("user", "hi")
    again.save()
    assert calls == ["Transaction", "Script"]
    assert again.user["tz"] == "IST"


def test_a_session_without_a_user_loads_as_plain_reads_in_one_round_trip(
    rstore: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Header, newest messages and a parent's header in one MULTI, nothing through Lua."""
    session = rstore.create()
    session["k"] = 1
    session.add_message("user", "hi")
    child = session.child("flights")
    child.add_message("user", "to Berlin")
    session.save()
    backend = backend_of(rstore)
    calls = count_round_trips(backend, monkeypatch)
    loaded = rstore.load(child.id)
    assert calls == ["Transaction"]
    assert loaded.messages[:] == [{"role": "user", "content": "to Berlin"}]
    snapshot = backend.load(child.id, 100, rstore.clock())
    assert snapshot is not None
    assert [p.session_id for p in snapshot.parents] == [session.id]
    assert list(snapshot.parents[0].state) == ["k"]


def test_a_plain_load_reads_only_the_window_since_the_summary(rstore: Store) -> None:
    store = Store(rstore.url, window=4, clock=rstore.clock)
    session = store.create()
    for i in range(10):
        session.add_message("user", f"m{i}")
    session.save()
    backend = backend_of(store)
    snapshot = backend.load(session.id, 4, rstore.clock())
    assert snapshot is not None
    assert (snapshot.window_start, len(snapshot.window)) == (6, 4)
    session.compact(lambda messages: "earlier", keep_last=2)
    session.save()
    compacted = backend.load(session.id, 4, rstore.clock())
    assert compacted is not None
    assert (compacted.window_start, len(compacted.window)) == (8, 2)
    nothing_up_front = backend.load(session.id, 0, rstore.clock())
    assert nothing_up_front is not None
    assert nothing_up_front.window == []
    assert store.load(session.id).get_history(last=2) == [
        {"role": "system", "content": "earlier", "name": "summary"},
        {"role": "user", "content": "m8"},
        {"role": "user", "content": "m9"},
    ]
    store.close()


def test_an_expired_session_does_not_load_plainly_either(rstore: Store, clock: FakeClock) -> None:
    store = Store(rstore.url, idle=60, clock=clock)
    session = store.create()
    session.add_message("user", "hi")
    session.save()
    clock.advance(61)
    assert backend_of(store).load_path.needs(session.id) == (None, 0)
    assert store.get(session.id) is None
    store.close()


def test_a_user_session_met_once_then_loads_with_its_user_in_one_transaction(
    rstore: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = saved_with_user(rstore, "harsh", tz="IST")
    other = Store(rstore.url, clock=rstore.clock)  # another process: it created no such session
    calls = count_round_trips(backend_of(other), monkeypatch)
    assert other.load(session.id).user["tz"] == "IST"
    assert calls == ["Transaction", "Command"]  # the user's record, once the header names it
    assert other.load(session.id).user["tz"] == "IST"
    assert calls == ["Transaction", "Command", "Transaction"]
    other.close()


def test_after_meeting_a_user_session_an_unknown_session_loads_through_the_script(
    rstore: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = rstore.create(user_id="harsh"), rstore.create(user_id="mira")
    second.user["tz"] = "CET"
    first.save()
    second.save()
    other = Store(rstore.url, clock=rstore.clock)
    calls = count_round_trips(backend_of(other), monkeypatch)
    other.load(first.id)
    assert other.load(second.id).user["tz"] == "CET"
    assert calls == ["Transaction", "Command", "Script"]  # one round trip, whatever it needs
    assert other.load(second.id).user["tz"] == "CET"
    assert calls == ["Transaction", "Command", "Script", "Transaction"]
    other.close()


def test_a_session_without_a_user_met_before_loads_plainly_among_users_sessions(
    rstore: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    anonymous, signed_in = rstore.create(), rstore.create(user_id="harsh")
    anonymous.add_message("user", "hi")
    anonymous.save()
    signed_in.save()
    calls = count_round_trips(backend_of(rstore), monkeypatch)
    rstore.load(signed_in.id)
    assert rstore.load(anonymous.id).messages[:] == [{"role": "user", "content": "hi"}]
    assert calls == ["Transaction", "Transaction"]


def test_a_remembered_user_the_header_no_longer_names_is_not_the_one_read(
    rstore: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = saved_with_user(rstore, "harsh", tz="IST")
    saved_with_user(rstore, "mallory", secret="s3cret")
    other = Store(rstore.url, clock=rstore.clock)
    wrong = SessionHeader(session.id, "mallory", 0.0, 0.0)
    backend_of(other).load_path.committing(Delta(session.id, 0.0, create=wrong))
    calls = count_round_trips(backend_of(other), monkeypatch)
    loaded = other.load(session.id)
    assert dict(loaded.user) == {"tz": "IST"}
    assert calls == ["Transaction", "Command"]  # the user the header names, read after
    other.close()


def test_a_system_prompt_before_the_window_is_read_with_the_window_once_known(
    rstore: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(rstore.url, window=5, clock=rstore.clock)
    session = store.create()
    session.add_message("system", "You are terse.")
    for i in range(10):
        session.add_message("user", f"m{i}")
    session.save()
    calls = count_round_trips(backend_of(store), monkeypatch)
    first = store.load(session.id)
    assert first.get_history(last=2)[0] == {"role": "system", "content": "You are terse."}
    assert calls == ["Transaction", "Command"]  # the prompt, read when the window asked
    assert store.load(session.id).get_history(last=2)[0]["role"] == "system"
    assert calls == ["Transaction", "Command", "Transaction"]  # now read with the window
    store.close()


def test_a_user_and_a_system_prompt_both_come_in_the_one_transaction(
    rstore: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(rstore.url, window=5, clock=rstore.clock)
    session = store.create(user_id="harsh")
    session.add_message("system", "You are terse.")
    session.add_message("system", "Answer in English.")
    for i in range(10):
        session.add_message("user", f"m{i}")
    session.user["tz"] = "IST"
    session.save()
    store.load(session.id).get_history(last=2)
    calls = count_round_trips(backend_of(store), monkeypatch)
    loaded = store.load(session.id)
    assert [m["content"] for m in loaded.get_history(last=2)] == [
        "You are terse.",
        "Answer in English.",
        "m8",
        "m9",
    ]
    assert loaded.user["tz"] == "IST"
    assert calls == ["Transaction"]
    store.close()


def test_unknown_sessions_go_plain_again_after_an_epoch_without_such_sessions() -> None:
    path = redis_ops.LoadPath()
    assert path.needs("t") == (None, 0)
    path.committing(Delta("s", 0.0, create=SessionHeader("s", "harsh", 0.0, 0.0)))
    assert [path.needs("t") for _ in range(path.EPOCH)] == [None] * path.EPOCH
    assert path.needs("t") == (None, 0)
    assert path.needs("s") == ("harsh", 0)


def test_the_sessions_a_process_remembers_are_bounded() -> None:
    path = redis_ops.LoadPath()
    for i in range(path.REMEMBERED + 1):
        path.committing(Delta(f"s{i}", 0.0, create=SessionHeader(f"s{i}", "harsh", 0.0, 0.0)))
    assert path.needs(f"s{path.REMEMBERED}") == ("harsh", 0)
    assert path.needs("s0") is None  # forgotten: loaded through the script, which reads it all


@pytest.mark.anyio
async def test_an_async_plain_load_reads_in_one_round_trip(rstore: Store) -> None:
    session = rstore.create()
    session.add_message("user", "hi")
    session.save()
    loaded = await rstore.aload(session.id)
    assert loaded.messages[:] == [{"role": "user", "content": "hi"}]
    assert backend_of(rstore).load_path.needs(session.id) == (None, 0)


def test_a_transaction_that_fails_inside_raises_its_error(rstore: Store) -> None:
    backend = backend_of(rstore)
    key = backend.layout.prefix + "not-a-hash"  # under the test's prefix: the cleanup takes it
    raw(rstore).set(key, b"x")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        backend.call(redis_ops.Transaction([redis_ops.Command(("HGETALL", key))]))
    assert backend.call(redis_ops.Command(("GET", key))) == b"x"  # the connection works


def test_the_session_keys_expire_in_redis_too(rstore: Store) -> None:
    store = Store(rstore.url, idle=60, clock=rstore.clock)
    session = store.create()
    session.add_message("user", "hi")
    session.save()
    client = raw(store)
    layout = backend_of(store).layout
    for key in (layout.header(session.id), layout.messages(session.id)):
        assert 60_000 < client.pttl(key) <= 60_000 + redis_ops.EXPIRY_SLACK_MS
    store.close()


def test_each_save_slides_the_ttl_of_every_key_of_the_session_and_its_user(
    rstore: Store, clock: FakeClock
) -> None:
    """Even keys the save does not write (expiries, vectors, the user's keys) follow it."""
    store = Store(rstore.url, idle=60, clock=clock)
    session = store.create(user_id="harsh")
    session.set("offer", 1, ttl=3600)
    session.user["tz"] = "IST"
    session.user.set("otp", "123", ttl=3600)
    session.add_message("user", "hi")
    session.save()
    backend = backend_of(store)
    vector = Delta(session.id, clock(), vectors={0: b"v"}, expires_at=clock() + 60)
    backend.commit(vector)
    quiet = store.create()  # state only: no message list, and its header slides all the same
    quiet["k"] = 1
    quiet.save()
    layout, client = backend.layout, raw(store)
    keys = [
        *layout.keys(session.id, "hmvx"),
        layout.header(quiet.id),
        layout.user_index("harsh"),
        *layout.keys(user_record_id("harsh"), "hx"),
    ]
    assert all(client.exists(key) for key in keys)
    assert not client.exists(layout.messages(quiet.id))
    for key in keys:
        client.pexpire(key, 5_000)  # as if most of the idle time had gone by

    clock.advance(30)
    again = store.load(session.id)
    again["k"] = 2  # writes none of the keys above but the header
    again.save()
    still = store.load(quiet.id)
    still["k"] = 2
    still.save()
    ttls = {key: client.pttl(key) for key in keys}
    assert all(55_000 < ttl <= 60_000 + redis_ops.EXPIRY_SLACK_MS for ttl in ttls.values()), ttls
    assert not client.exists(layout.messages(quiet.id))
    store.close()


def test_a_user_index_without_a_ttl_gets_one_and_a_longer_ttl_is_kept(rstore: Store) -> None:
    """A user's keys take at least the TTL of the session that saves; one that has none (its
    sessions had no expiry) gets the session's, and a longer one is never shortened."""
    forever = Store(rstore.url, idle=None, clock=rstore.clock)
    forever.create(user_id="harsh").save()
    client = raw(rstore)
    index = backend_of(rstore).layout.user_index("harsh")
    assert client.pttl(index) == -1
    long = Store(rstore.url, idle=600, clock=rstore.clock)
    long.create(user_id="harsh").save()
    assert 590_000 < client.pttl(index) <= 600_000 + redis_ops.EXPIRY_SLACK_MS
    short = Store(rstore.url, idle=60, clock=rstore.clock)
    short.create(user_id="harsh").save()
    assert client.pttl(index) > 590_000
    for store in (forever, long, short):
        store.close()


def test_a_state_only_save_changes_no_other_header_field(rstore: Store, clock: FakeClock) -> None:
    """The commit script writes only the meta fields a save changes; the rest stay as stored."""
    session = rstore.create()
    session.add_message("system", "be brief")
    session.add_message("user", "hi")
    session["k"] = 0
    session.save()
    client, key = raw(rstore), backend_of(rstore).layout.header(session.id)
    before = client.hgetall(key)
    client.hset(key, "_ca", b"1.7e9")  # the same time, spelled otherwise
    clock.advance(5)
    again = rstore.load(session.id)
    again["k"] = 1
    again.save()
    after = client.hgetall(key)
    assert after[b"_ca"] == b"1.7e9"
    assert int(after[b"_rev"]) == int(before[b"_rev"]) + 1
    assert float(after[b"_ua"]) == clock()
    changed = {f for f in after if after[f] != before.get(f)}
    assert changed == {b"_ca", b"_rev", b"_ua", b"_ea", b"s:k"}
    loaded = rstore.load(session.id)
    assert (loaded.created_at, len(loaded.messages), loaded["k"]) == (session.created_at, 2, 1)


def test_a_header_from_before_lead_and_expiry_fields_still_loads_and_saves(
    rstore: Store,
) -> None:
    """Older headers may lack optional meta fields ("_lead", "_ea"); a save keeps them so."""
    session = rstore.create()
    session.add_message("user", "hi")
    session.save()
    client, key = raw(rstore), backend_of(rstore).layout.header(session.id)
    client.hdel(key, "_lead", "_ea")
    again = rstore.load(session.id)
    again.add_message("user", "again")
    again.save()
    assert not client.hexists(key, "_lead")
    assert [m["content"] for m in rstore.load(session.id).messages] == ["hi", "again"]


def test_saves_either_side_of_the_spread_limit_commit_whole(
    rstore: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Up to SPREAD_ARGS commit arguments go as msgpack values one after another, more as one
    array (Lua's stack could not take them all at once): the script reads both."""
    sizes: list[int] = []
    pack_args = redis_ops.pack_args

    def counting(args: list[str | bytes | int]) -> bytes:
        sizes.append(len(args))
        return pack_args(args)

    monkeypatch.setattr(redis_ops, "pack_args", counting)
    session = rstore.create()
    session.save()
    fixed = sizes[0]  # a save with nothing to set, delete or append
    for extra in (0, 1):
        again = rstore.load(session.id)
        for i in range(redis_ops.SPREAD_ARGS - fixed + extra):
            again.add_message("user", f"{extra}-{i}")
        again.save()
    assert sizes[1:] == [redis_ops.SPREAD_ARGS, redis_ops.SPREAD_ARGS + 1]
    assert pack_args(["a"] * 16)[0] != 0xDC  # spread: no array header
    assert pack_args(["a"] * (redis_ops.SPREAD_ARGS + 1))[0] == 0xDC
    contents = [m["content"] for m in rstore.load(session.id).messages]
    count = redis_ops.SPREAD_ARGS - fixed
    assert contents == [f"0-{i}" for i in range(count)] + [f"1-{i}" for i in range(count + 1)]


def test_a_save_of_many_keys_keeps_the_expiry_set_in_step(rstore: Store, clock: FakeClock) -> None:
    """Sets, deletes, expired keys and vectors each go to Redis as one command per 1000 values:
    the expiry set ("x") lists exactly the live keys that have a TTL."""
    session = rstore.create()
    for i in range(1100):
        session.set(f"t{i}", i, ttl=100 + i)
    session["plain"] = 0
    session.save()
    backend, client = backend_of(rstore), cast(Any, raw(rstore))  # its stubs: bytes | str
    expiries = backend.layout.expiries(session.id)
    assert client.zcard(expiries) == 1100

    clock.advance(101.5)  # t0 and t1 are past their TTL
    again = rstore.load(session.id)
    for i in range(2, 1050):
        del again[f"t{i}"]
    again["t1050"] = "no TTL any more"
    again.set("new", 1, ttl=10)
    again.save()
    backend.commit(Delta(session.id, clock(), vectors={p: b"v%d" % p for p in range(600)}))

    timed = {f"t{i}" for i in range(1051, 1100)} | {"new"}
    assert {k.decode() for k in client.zrange(expiries, 0, -1)} == timed
    fields = {f.decode() for f in client.hkeys(backend.layout.header(session.id))}
    assert {f[2:] for f in fields if f.startswith("s:")} == timed | {"t1050", "plain"}
    assert client.hlen(backend.layout.vectors(session.id)) == 600
    loaded = rstore.load(session.id)
    assert (loaded["t1050"], loaded["new"], loaded.get("t2")) == ("no TTL any more", 1, None)


def test_purge_drops_expired_state_fields(rstore: Store, clock: FakeClock) -> None:
    session = rstore.create()
    session.set("offer", "cheap", ttl=10)
    session["kept"] = 1
    session.save()
    clock.advance(11)
    assert rstore.purge() == 0
    fields = raw(rstore).hkeys(backend_of(rstore).layout.header(session.id))
    assert b"s:offer" not in fields
    assert b"s:kept" in fields


def test_a_corrupt_state_field_names_the_session_and_stays(rstore: Store) -> None:
    session = rstore.create()
    session["k"] = "v"
    session.save()
    key = backend_of(rstore).layout.header(session.id)
    raw(rstore).hset(key, "s:k", b"\xc1garbage")

    with pytest.raises(CorruptRecord) as info:
        rstore.load(session.id)
    assert info.value.session_id == session.id
    assert raw(rstore).hget(key, "s:k") == b"\xc1garbage"


def test_a_state_field_read_again_is_not_unpacked_again(
    rstore: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process's save makes the load read the whole hash (a state this process keeps
    is read only when it changed: tests/test_redis_kept.py); only its changed field is new."""
    session = rstore.create()
    session.update({f"key{i}": i for i in range(100)})
    session.save()
    rstore.load(session.id)
    elsewhere = Store(rstore.url, clock=rstore.clock)
    theirs = elsewhere.load(session.id)
    theirs["key7"] = "changed"
    theirs.save()
    elsewhere.close()
    unpacked = recorded_calls(redis_ops, "unpack", monkeypatch)
    loaded = rstore.load(session.id)
    assert (len(loaded), loaded["key7"], loaded["key99"]) == (100, "changed", 99)
    assert len(unpacked) == 1  # the field the save changed


def test_a_corrupt_message_names_the_session(rstore: Store) -> None:
    session = rstore.create()
    session.add_message("user", "hi")
    session.save()
    client: Any = raw(rstore)  # redis-py's stubs want str values; these are bytes
    client.lset(backend_of(rstore).layout.messages(session.id), 0, b"\x01\xc1")
    with pytest.raises(CorruptRecord, match=session.id):
        list(rstore.load(session.id).messages)


@given(
    st.lists(
        st.one_of(
            st.binary(max_size=40),
            st.text(max_size=20),
            st.integers(-(2**63), 2**63),
            st.floats(allow_nan=False, allow_infinity=False),
        ),
        max_size=8,
    )
)
def test_a_command_is_packed_as_redis_py_packs_it(args: list[str | bytes | int | float]) -> None:
    command = ["HSET", *args]  # (redis-py splits a first argument with spaces in it)
    connection: Any = redis.connection.Connection  # (untyped in redis-py)
    expected = b"".join(connection().pack_command(*command))
    assert redis_ops.resp(command) == expected


def test_a_header_parses_the_same_as_a_map_a_flat_list_or_with_text_names() -> None:
    fields = {
        b"_v": b"1",
        b"_ca": b"1.5",
        b"_ua": b"2.5",
        b"_rev": b"3",
        b"_mc": b"4",
        b"_tt": b"5",
        b"_uid": b"u",
        b"_ch": b"a/b",
        b"s:city": pack([b"\x01\xa6Berlin", 2.5, None]),  # an entry as stored
    }
    as_map = redis_ops.parse_header("s", fields)
    assert as_map is not None
    assert (as_map.revision, as_map.children, list(as_map.state)) == (3, ["a", "b"], ["city"])
    flat = [x for pair in fields.items() for x in pair]
    assert redis_ops.parse_header("s", flat) == as_map
    text: Any = {name.decode(): value for name, value in fields.items()}
    assert redis_ops.parse_header("s", text) == as_map


def test_a_store_url_may_name_its_key_prefix(tmp_path: Path) -> None:
    store = Store(isolated_url(tmp_path.name).split("?")[0] + "?key_prefix=statemw-test-x:")
    assert backend_of(store).layout.prefix == "statemw-test-x:"
    store.close()


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("redis://127.0.0.1:1/0", {"no_such_option": 1}),
        ("redis://127.0.0.1:1/0", {"key_prefix": "a{b}:"}),
        ("redis://127.0.0.1:1/0?key_prefix={x}", {}),
        ("redis://127.0.0.1:1/0?prefix=app:", {}),
    ],
)
def test_bad_redis_options_are_configuration_errors(url: str, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Store(url, **options).backend  # noqa: B018


def test_an_unknown_url_option_is_named_before_any_command() -> None:
    with pytest.raises(ConfigurationError, match="bad Redis URL: unknown option prefix "):
        Store("redis://127.0.0.1:1/0?prefix=app:").backend  # noqa: B018


def test_unix_socket_urls_work(tmp_path: Path) -> None:
    sock = tmp_path / "redis.sock"
    server = RedisServer(None, "--unixsocket", str(sock), "--unixsocketperm", "700").start()
    try:
        store = Store(f"unix://{sock}?db=0")
        session = store.create()
        session["k"] = "v"
        session.save()
        assert store.load(session.id)["k"] == "v"
        store.close()
    finally:
        server.remove()


def test_an_unreachable_redis_is_store_unavailable() -> None:
    store = Store(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    with pytest.raises(StoreUnavailable):
        store.get("a" * 24)
    session = store.create()
    session["k"] = "v"
    with pytest.raises(StoreUnavailable):
        session.save()
    store.close()


@pytest.mark.anyio
async def test_an_unreachable_redis_is_store_unavailable_async() -> None:
    store = Store(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    assert isinstance(store.abackend, AsyncRedisBackend)
    with pytest.raises(StoreUnavailable):
        await store.aget("a" * 24)
    await store.aclose()


def test_a_redis_killed_mid_run_leaves_no_half_written_session(tmp_path: Path) -> None:
    """Saves run in a thread; the server is SIGKILLed under them, then started again."""
    server = RedisServer(None, "--appendonly", "yes", "--appendfsync", "always").start()
    store = Store(server.url, socket_timeout=2, socket_connect_timeout=1)
    try:
        session = store.create()
        session["turns"] = 0
        session.save()
        sid = session.id
        ten_saves = threading.Event()
        failures: list[BaseException] = []

        def writer() -> None:
            turn = store.load(sid)
            for n in range(1, 10_000):
                turn.add_message("user", f"q{n}")
                turn.add_message("assistant", f"a{n}")
                turn["turns"] = n
                try:
                    turn.save()
                except StoreUnavailable as exc:
                    failures.append(exc)
                    return
                if n == 10:
                    ten_saves.set()

        thread = threading.Thread(target=writer)
        thread.start()
        assert ten_saves.wait(30)
        server.kill()
        thread.join(30)
        assert not thread.is_alive()
        assert len(failures) == 1
        with pytest.raises(StoreUnavailable):
            store.get(sid)

        server.start()  # same port and directory: the append-only file comes back
        again = store.load(sid)
        turns = again["turns"]
        assert turns >= 10
        assert len(again.messages) == 2 * turns
        assert again.messages[-1]["content"] == f"a{turns}"
        again.add_message("user", "after the restart")
        again.save()
        assert len(store.load(sid).messages) == 2 * turns + 1
    finally:
        store.close()
        server.remove()


@pytest.mark.slow
def test_four_processes_appending_to_one_session_lose_nothing(tmp_path: Path) -> None:
    url = isolated_url(tmp_path.name)
    store = Store(url)
    session = store.create()
    session.save()
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=append_worker, args=(url, session.id, w, 200)) for w in range(4)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join(60)
    assert [p.exitcode for p in workers] == [0, 0, 0, 0]

    contents = [m["content"] for m in store.load(session.id).messages]
    assert len(contents) == 800
    for w in range(4):
        assert [c for c in contents if c.startswith(f"w{w}-")] == [f"w{w}-{i}" for i in range(200)]
    assert [m["content"] for m in store.load(session.id).messages] == contents
    store.close()


def _save_turns(store: Store, session_id: str, name: str, turns: int) -> None:
    for turn in range(turns):
        session = store.load(session_id)
        session[f"{name}{turn}"] = turn
        session.save()


def test_a_forked_child_talks_to_redis_on_connections_of_its_own(rstore: Store) -> None:
    """A store used before a fork (kept connections and all) serves parent and child at once."""
    session = rstore.create()
    session.save()
    context = multiprocessing.get_context("fork")
    child = context.Process(target=_save_turns, args=(rstore, session.id, "child", 30))
    child.start()
    _save_turns(rstore, session.id, "parent", 30)
    child.join(30)
    assert child.exitcode == 0
    assert len(rstore.load(session.id)) == 60


def test_the_async_backend_serves_one_event_loop_after_another(rstore: Store) -> None:
    """Starlette's TestClient, Flask's async views and asyncio.run each bring a new loop."""
    session = rstore.create()
    session.save()

    async def turn(n: int) -> int:
        again = await rstore.aload(session.id)
        again.add_message("user", f"turn {n}")
        await again.asave()
        return len(again.messages)

    assert [asyncio.run(turn(n)) for n in range(3)] == [1, 2, 3]
    gc.collect()  # a connection left open in a dead loop would warn here (an error in tests)


def test_sessions_redis_expired_by_itself_leave_the_user_index(rstore: Store) -> None:
    first, second = rstore.create(user_id="harsh"), rstore.create(user_id="harsh")
    first.save()
    second.save()
    layout = backend_of(rstore).layout
    raw(rstore).delete(
        layout.header(first.id), layout.messages(first.id)
    )  # as Redis's own expiry would
    assert rstore.user_sessions("harsh") == [second.id]
    assert raw(rstore).zrange(layout.user_index("harsh"), 0, -1) == [second.id.encode()]


def test_vectors_are_read_by_position_range(rstore: Store) -> None:
    backend = backend_of(rstore)
    session = rstore.create()
    session.save()
    raw(rstore).hset(
        backend.layout.vectors(session.id), mapping={"3": b"v3", "7": b"v7", "2000": b"vx"}
    )
    assert backend.read_vectors(session.id, 0, 5) == {3: b"v3"}
    assert backend.read_vectors(session.id, 3, 8) == {3: b"v3", 7: b"v7"}
    assert backend.read_vectors(session.id, 0, 5000) == {3: b"v3", 7: b"v7", 2000: b"vx"}
    assert backend.read_vectors(session.id, 5, 5) == {}


def test_scripts_come_back_after_a_script_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scripts go out as EVALSHA; a server without them (new, restarted, SCRIPT FLUSHed)
    answers NOSCRIPT, and the call loads the script and runs it again."""
    server = RedisServer().start()
    store = Store(server.url)
    try:
        session = store.create(user_id="harsh")
        session.add_message("user", "hi")
        session.save()
        again = store.load(session.id)
        again.add_message("assistant", "hello")
        calls = count_round_trips(backend_of(store), monkeypatch)
        raw(store).script_flush()
        again.save()  # EVALSHA, NOSCRIPT, SCRIPT LOAD, EVALSHA
        assert calls == ["Script", "Command", "Script"]
        monkeypatch.undo()

        async def turn() -> int:
            raw(store).script_flush()
            loaded = await store.aload(session.id)
            loaded.add_message("user", "and again")
            await loaded.asave()
            return len(loaded.messages)

        assert asyncio.run(turn()) == 3
        assert [m["content"] for m in store.load(session.id).messages] == [
            "hi",
            "hello",
            "and again",
        ]
    finally:
        store.close()
        server.remove()


def test_an_event_loop_that_used_the_store_is_freed_when_it_ends(rstore: Store) -> None:
    session = rstore.create()
    session["k"] = 1
    session.save()
    assert not event_loop_outlives_its_run(rstore, session.id)
