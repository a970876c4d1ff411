"""What the PostgreSQL backend adds to the shared contract: layout, round trips, faults, processes.

The contract itself (tests/test_session.py and friends) runs on PostgreSQL through conftest's
`store` fixture; these tests pin down what only a PostgreSQL store can get wrong. Tests that
restart a server use a private cluster (tests/postgres_server.PostgresServer), never the shared one.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

import pytest

from statemw import Store
from statemw.backends import postgres, postgres_ops, postgres_sql
from statemw.backends.postgres import AsyncPostgresBackend, PostgresBackend
from statemw.codec import Codec
from statemw.errors import (
    ConfigurationError,
    CorruptRecord,
    InvalidValue,
    SessionNotFound,
    StoreUnavailable,
)
from tests.postgres_server import (
    PostgresServer,
    append_worker,
    execute,
    isolated_url,
)
from tests.redis_server import free_port
from tests.support import FakeClock, event_loop_outlives_its_run


@pytest.fixture
def pstore(clock: FakeClock) -> Iterator[Store]:
    store = Store(isolated_url(), clock=clock)
    yield store
    store.close()


def backend_of(store: Store) -> PostgresBackend:
    backend = store.backend
    assert isinstance(backend, PostgresBackend)
    return backend


def rows(store: Store, statement: str) -> list[tuple[Any, ...]]:
    """Run a statement against the store's own schema (`{s}` names it)."""
    return execute(statement.format(s=f'"{backend_of(store).settings.schema}"'))


def count_round_trips(backend: PostgresBackend, monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Record each statement the backend sends (one round trip each)."""
    calls: list[bytes] = []
    original = postgres._Connection.query

    def counting(conn: Any, query: postgres_ops.Query) -> Any:
        calls.append(query.sql)
        return original(conn, query)

    monkeypatch.setattr(postgres._Connection, "query", counting)
    return calls


# -- layout and round trips ------------------------------------------------------------------------


def test_a_save_and_a_load_are_one_round_trip_each(
    pstore: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = pstore.create(user_id="harsh")
    session.user["tz"] = "IST"
    session["k"] = "v"
    session.child("flights")["to"] = "Berlin"
    session.save()
    calls = count_round_trips(backend_of(pstore), monkeypatch)

    again = pstore.load(f"{session.id}/flights")  # header, window, parent's and user's headers
    assert len(calls) == 1
    again["when"] = "Tuesday"
    again.add_message("user", "hi")
    again.save()
    assert len(calls) == 2
    assert again.get("k") == "v"  # read from the parent's header, which the load brought
    assert pstore.load(session.id).user["tz"] == "IST"


@pytest.mark.anyio
async def test_an_async_save_and_load_are_one_round_trip_each(
    pstore: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = await pstore.acreate(user_id="harsh")
    session.add_message("user", "hi")
    await session.asave()
    backend = pstore.abackend
    assert isinstance(backend, AsyncPostgresBackend)
    calls: list[bytes] = []
    original = postgres._AsyncConnection.query

    async def counting(conn: Any, query: postgres_ops.Query) -> Any:
        calls.append(query.sql)
        return await original(conn, query)

    monkeypatch.setattr(postgres._AsyncConnection, "query", counting)
    again = await pstore.aload(session.id)
    again.add_message("assistant", "hello")
    await again.asave()
    assert len(calls) == 2
    await pstore.aclose()


def test_a_load_reads_the_window_not_the_history(pstore: Store) -> None:
    """The last-N query reads N rows by the (sid, pos) index, whatever the length."""
    session = pstore.create()
    for n in range(300):
        session.add_message("user", f"m{n}")
    session.save()
    store = Store(pstore.url, window=20, clock=pstore.clock)
    try:
        again = store.load(session.id)
        assert again._log.start == 280
        assert [m["content"] for m in again.get_history(last=3)] == ["m297", "m298", "m299"]
        assert again.messages[5]["content"] == "m5"  # older pages on demand
    finally:
        store.close()


def test_each_message_and_each_state_key_is_a_row_of_its_own(pstore: Store) -> None:
    session = pstore.create(user_id="harsh")
    session["a"] = 1
    session.set("offer", "cheap", ttl=60)
    session.add_message("user", "hi")
    session.add_message("assistant", "hello")
    session.save()

    assert rows(pstore, "SELECT pos FROM {s}.messages ORDER BY pos") == [(0,), (1,)]
    assert rows(pstore, "SELECT key, expires_at IS NOT NULL FROM {s}.state ORDER BY key") == [
        ("a", False),
        ("offer", True),
    ]
    assert rows(pstore, "SELECT message_count, revision FROM {s}.sessions") == [(2, 1)]


def test_the_schema_records_its_version(pstore: Store) -> None:
    pstore.create().save()
    version = rows(pstore, "SELECT version FROM {s}.schema_version")
    assert version == [(postgres_sql.SCHEMA_VERSION,)]


def test_a_schema_from_a_newer_statemw_is_refused_clearly(pstore: Store) -> None:
    pstore.create().save()
    rows(pstore, "UPDATE {s}.schema_version SET version = version + 1")
    newer = Store(pstore.url)
    try:
        with pytest.raises(ConfigurationError, match="newer than this statemw"):
            newer.get("a" * 24)
    finally:
        newer.close()


def test_a_second_process_finds_the_schema_made_and_makes_nothing(
    pstore: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    pstore.create().save()
    other = Store(pstore.url)
    try:
        calls = count_round_trips(backend_of(other), monkeypatch)
        assert other.get("a" * 24) is None
        assert calls[:2] == [backend_of(other).sql.probe, backend_of(other).sql.read_version]
        assert len(calls) == 3  # the probe, the version, the load: no DDL
    finally:
        other.close()


@pytest.mark.anyio
async def test_create_false_opens_only_a_store_that_exists_and_makes_nothing() -> None:
    """The statemw command's read-only commands open stores so (as a URL option too)."""
    url = isolated_url(create="false")
    schema = url.split("schema=")[1].split("&")[0]
    store = Store(url)
    try:
        with pytest.raises(ConfigurationError, match=f"schema '{schema}' does not exist"):
            store.get("a" * 24)
        with pytest.raises(ConfigurationError, match=f"schema '{schema}' does not exist"):
            await store.aget("a" * 24)
        assert not execute(f"SELECT 1 FROM pg_namespace WHERE nspname = '{schema}'")
        maker = Store(url, create=True)
        maker.create().save()
        maker.close()
        assert store.get("a" * 24) is None  # once made, it opens as ever
        assert await store.aget("a" * 24) is None
    finally:
        await store.aclose()
        store.close()


def test_the_schema_is_migrated_in_place_from_an_older_version(
    pstore: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A later statemw adds the next migration; this database gets just that, kept data."""
    session = pstore.create()
    session["k"] = "v"
    session.save()
    later = postgres_sql.SCHEMA_VERSION + 1
    monkeypatch.setattr(postgres_sql, "SCHEMA_VERSION", later)
    monkeypatch.setitem(
        postgres_sql.MIGRATIONS, later, ["ALTER TABLE {s}.sessions ADD COLUMN note text"]
    )
    upgraded = Store(pstore.url, clock=pstore.clock)
    try:
        assert upgraded.load(session.id)["k"] == "v"
        assert rows(pstore, "SELECT version FROM {s}.schema_version") == [(later,)]
        assert rows(pstore, "SELECT note FROM {s}.sessions") == [(None,)]
    finally:
        upgraded.close()


def test_a_version_1_database_gains_confirm_after_and_its_keys_read_as_never_stale(
    pstore: Store, clock: FakeClock
) -> None:
    schema = f'"{backend_of(pstore).settings.schema}"'
    names = {"s": schema, "schema_literal": f"'{backend_of(pstore).settings.schema}'"}
    execute(f"CREATE SCHEMA {schema}")
    execute(postgres_sql.CREATE_VERSION_TABLE.format(**names))
    for statement in postgres_sql.MIGRATIONS[1]:
        execute(statement.format(**names))
    value = Codec().encode("Berlin", what="test").hex()
    sid = "a" * 24
    execute(
        f"INSERT INTO {schema}.sessions (sid, created_at, updated_at, revision) "
        f"VALUES ('{sid}', {clock.now}, {clock.now}, 1);"
        f"INSERT INTO {schema}.state (sid, key, value, updated_at) "
        f"VALUES ('{sid}', 'city', '\\x{value}', {clock.now - 60});"
        f"INSERT INTO {schema}.schema_version (version) VALUES (1)"
    )

    session = pstore.load(sid)

    assert (session["city"], session.updated_at("city"), session.stale_keys()) == (
        "Berlin",
        clock.now - 60,
        [],
    )
    session.set("city", "Munich", confirm_after=10)
    session.save()
    clock.advance(11)
    assert pstore.load(sid).stale_keys() == ["city"]
    assert rows(pstore, "SELECT version FROM {s}.schema_version") == [(2,)]


def test_vectors_are_read_by_position_range(pstore: Store) -> None:
    session = pstore.create()
    session.save()
    rows(
        pstore,
        "INSERT INTO {s}.vectors VALUES "
        + ", ".join(f"('{session.id}', {p}, '\\x{p % 256:02x}')" for p in (3, 7, 2000)),
    )
    backend = backend_of(pstore)
    assert backend.read_vectors(session.id, 0, 5) == {3: b"\x03"}
    assert backend.read_vectors(session.id, 3, 8) == {3: b"\x03", 7: b"\x07"}
    assert backend.read_vectors(session.id, 0, 5000) == {3: b"\x03", 7: b"\x07", 2000: b"\xd0"}
    assert backend.read_vectors(session.id, 5, 5) == {}


def test_a_store_without_notify_saves_and_refuses_to_subscribe(clock: FakeClock) -> None:
    store = Store(isolated_url(notify="false"), clock=clock)
    try:
        session = store.create()
        session["k"] = "v"
        session.save()
        assert store.load(session.id)["k"] == "v"
        with pytest.raises(ConfigurationError, match="notify"):
            store.subscribe(session.id)
    finally:
        store.close()


# -- bad rows and bad input ------------------------------------------------------------------------


def test_a_corrupt_state_row_names_the_session_and_stays(pstore: Store) -> None:
    session = pstore.create()
    session["k"] = "v"
    session.save()
    rows(pstore, "UPDATE {s}.state SET value = '\\x01c1'::bytea")

    with pytest.raises(CorruptRecord) as info:
        pstore.load(session.id)
    assert info.value.session_id == session.id
    assert rows(pstore, "SELECT value FROM {s}.state") == [(b"\x01\xc1",)]


def test_a_corrupt_message_row_names_the_session_and_stays(pstore: Store) -> None:
    session = pstore.create()
    session.add_message("user", "hi")
    session.save()
    rows(pstore, "UPDATE {s}.messages SET body = '\\x0799'::bytea")

    with pytest.raises(CorruptRecord, match=session.id):
        list(pstore.load(session.id).messages)
    assert rows(pstore, "SELECT body FROM {s}.messages") == [(b"\x07\x99",)]


def test_a_key_postgres_text_cannot_hold_is_invalid_value(pstore: Store) -> None:
    session = pstore.create()
    session["a\x00b"] = 1
    with pytest.raises(InvalidValue, match="NUL"):
        session.save()


def test_an_expired_session_is_gone_with_its_sub_sessions_when_created_again(
    pstore: Store, clock: FakeClock
) -> None:
    store = Store(pstore.url, idle=60, clock=clock)
    try:
        session = store.create(session_id="fixed-id")
        session.child("flights").add_message("user", "to Berlin")
        session.save()
        clock.advance(61)
        with pytest.raises(SessionNotFound):
            store.load("fixed-id")
        again = store.create(session_id="fixed-id")
        again.save()
        assert len(store.load("fixed-id").child("flights").messages) == 0
        assert rows(pstore, "SELECT sid FROM {s}.sessions") == [("fixed-id",)]
    finally:
        store.close()


# -- URLs and faults -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("postgresql://127.0.0.1:99999999/db", {}),
        ("postgresql://[bad", {}),
        ("postgresql://127.0.0.1/db", {"no_such_option": 1}),
        ("postgresql://127.0.0.1/db?schema=Bad-Name", {}),
        ("postgresql://127.0.0.1/db", {"pool_timeout": "soon"}),
    ],
)
def test_a_bad_url_or_option_is_a_configuration_error(url: str, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Store(url, **options).backend  # noqa: B018


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:pw5ecret@[bad",
        "postgresql://u:pw5%zzecret@db.example/app",
        "postgresql://u@db.example/app?password=pw5ecret&port=nope",
    ],
)
def test_a_url_libpq_cannot_parse_never_shows_the_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Store(url).backend  # noqa: B018
    shown = "".join(traceback.format_exception(info.value))  # the cause is printed too
    assert "ecret" not in shown
    assert "bad PostgreSQL URL" in shown


def test_both_scheme_spellings_and_url_options_are_read() -> None:
    store = Store("postgres://u:secret@db.example:6543/app?schema=s1&pool_max_size=3&sslmode=allow")
    backend = backend_of(store)
    assert backend.settings.schema == "s1"
    assert backend.settings.pool_max_size == 3
    assert backend.settings.target == "db.example:6543/app"
    assert "sslmode=allow" in backend.settings.conninfo
    store.close()


def test_without_psycopg_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "statemw.backends.postgres", raising=False)
    with pytest.raises(ConfigurationError, match=r"statemw\[postgres\]"):
        Store("postgresql://127.0.0.1/db").backend  # noqa: B018


def test_a_refused_connection_is_store_unavailable_naming_the_host_not_the_password() -> None:
    port = free_port()
    store = Store(f"postgresql://postgres:s3cret@127.0.0.1:{port}/test", pool_timeout=0.3)
    try:
        with pytest.raises(StoreUnavailable) as info:
            store.get("a" * 24)
        message = str(info.value)
        assert f"127.0.0.1:{port}" in message
        assert "refused" in message.lower()
        assert "s3cret" not in message
    finally:
        store.close()


def test_a_refused_connection_is_store_unavailable_async() -> None:
    port = free_port()
    store = Store(f"postgresql://postgres:s3cret@127.0.0.1:{port}/test", pool_timeout=0.3)

    async def attempt() -> str:
        try:
            with pytest.raises(StoreUnavailable) as info:
                await store.aget("a" * 24)
            return str(info.value)
        finally:
            await store.aclose()

    message = asyncio.run(attempt())  # the loop also finishes: no pool task left behind
    assert f"127.0.0.1:{port}" in message
    assert "s3cret" not in message


def test_a_postgres_restart_under_load_is_store_unavailable_then_recovers() -> None:
    """Saves run in a thread; the server restarts under them. The same Store carries on."""
    server = PostgresServer().start()
    store = Store(server.url, pool_timeout=1.0)
    try:
        session = store.create()
        session["turns"] = 0
        session.save()
        sid = session.id
        ten_saves, recovered = threading.Event(), threading.Event()
        failures: list[StoreUnavailable] = []
        stop = threading.Event()

        def writer() -> None:
            turn = store.load(sid)
            while not stop.is_set():
                n = turn["turns"] + 1
                turn.add_message("user", f"q{n}")
                turn.add_message("assistant", f"a{n}")
                turn["turns"] = n
                try:
                    turn.save()
                except StoreUnavailable as exc:
                    failures.append(exc)
                    turn = _reload(store, sid, stop)  # the next request, as an app would
                    continue
                if n == 10:
                    ten_saves.set()
                if failures and n >= 10:
                    recovered.set()

        thread = threading.Thread(target=writer)
        thread.start()
        assert ten_saves.wait(30)
        server.restart()
        assert recovered.wait(30)
        stop.set()
        thread.join(30)
        assert failures
        assert all("127.0.0.1" in str(f) for f in failures)

        again = store.load(sid)
        turns = again["turns"]
        contents = [m["content"] for m in again.messages]
        assert contents == [t for n in range(1, turns + 1) for t in (f"q{n}", f"a{n}")]
    finally:
        store.close()
        server.remove()


def _reload(store: Store, sid: str, stop: threading.Event) -> Any:
    """Load the session, retrying while the server is still away."""
    while True:
        try:
            return store.load(sid)
        except StoreUnavailable:
            if stop.is_set():
                raise


# -- processes -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_four_processes_appending_to_one_session_lose_nothing() -> None:
    url = isolated_url()
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
        process.join(120)
    assert [p.exitcode for p in workers] == [0, 0, 0, 0]

    contents = [m["content"] for m in store.load(session.id).messages]
    assert len(contents) == 800
    assert len(set(contents)) == 800
    for w in range(4):
        assert [c for c in contents if c.startswith(f"w{w}-")] == [f"w{w}-{i}" for i in range(200)]
    assert [m["content"] for m in Store(url).load(session.id).messages] == contents
    store.close()


def turn_worker(url: str, session_id: str, acks: Connection) -> None:
    """The app process of the SIGKILL test: turns of two messages; tells each acknowledged one."""
    store = Store(url)
    session = store.load(session_id)
    n = 0
    while True:
        n += 1
        session.add_message("user", f"q{n}")
        session.add_message("assistant", f"a{n}")
        session["turns"] = n
        session.save()
        acks.send(n)


def test_a_sigkilled_app_loses_no_acknowledged_turn_and_leaves_no_half_turn() -> None:
    url = isolated_url()
    store = Store(url)
    try:
        session = store.create()
        session["turns"] = 0
        session.save()
        context = multiprocessing.get_context("spawn")
        receiver, sender = context.Pipe(duplex=False)
        app = context.Process(target=turn_worker, args=(url, session.id, sender))
        app.start()
        sender.close()
        acknowledged = 0
        while acknowledged < 30:
            assert receiver.poll(60)
            acknowledged = receiver.recv()
        assert app.pid is not None
        os.kill(app.pid, signal.SIGKILL)  # almost surely inside a save: that is where it waits
        app.join(30)
        with_pipe_drained = _drain(receiver, acknowledged)

        again = store.load(session.id)
        turns = again["turns"]
        assert turns >= with_pipe_drained
        contents = [m["content"] for m in again.messages]
        assert contents == [t for n in range(1, turns + 1) for t in (f"q{n}", f"a{n}")]
        again.add_message("user", "after the crash")
        again.save()
        assert len(store.load(session.id).messages) == 2 * turns + 1
    finally:
        store.close()


def _drain(receiver: Connection, last: int) -> int:
    """The last acknowledgement the killed process got out (a torn last one is not counted)."""
    try:
        while receiver.poll(0):
            last = receiver.recv()
    except (EOFError, OSError, ValueError):
        pass
    return last


def test_the_async_backend_serves_one_event_loop_after_another(pstore: Store) -> None:
    """Starlette's TestClient, Flask's async views and asyncio.run each bring a new loop."""
    session = pstore.create()
    session.save()

    async def turn(n: int) -> int:
        again = await pstore.aload(session.id)
        again.add_message("user", f"turn {n}")
        await again.asave()
        return len(again.messages)

    assert [asyncio.run(turn(n)) for n in range(3)] == [1, 2, 3]


def test_a_save_mixing_whole_and_fractional_seconds_is_stored(pstore: Store) -> None:
    """A confirm_after of 1 set now beside one of 1.0 read back: one float8[] for PostgreSQL."""
    session = pstore.create(user_id="u")
    session.user.set("a", 0, confirm_after=1)
    session.save()
    again = pstore.load(session.id)
    again.user.confirm("a")
    again.user.set("b", 0, confirm_after=1)
    again.save()
    assert sorted(pstore.load(session.id).user) == ["a", "b"]


def test_an_event_loop_that_used_the_store_is_freed_when_it_ends(pstore: Store) -> None:
    session = pstore.create()
    session["k"] = 1
    session.save()
    assert not event_loop_outlives_its_run(pstore, session.id)
