"""Copying sessions between stores (statemw.transfer, `statemw copy`): resumable, verified."""

from __future__ import annotations

import io
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from statemw import Store, generate_key
from statemw.cli import main
from statemw.codec import META_KEY
from statemw.errors import DecryptionError, StoreUnavailable
from statemw.records import Committed, Delta, user_record_id
from statemw.transfer import copy_sessions
from tests import postgres_server, redis_server
from tests.support import FakeClock


def embed(text: str) -> list[float]:
    return [float(len(text)), float(text.count("Berlin")), 1.0]


def build(store: Store) -> list[str]:
    """Two users' sessions and an anonymous one, with everything a session can hold."""
    trip = store.create(user_id="harsh")
    trip["destination"] = "Berlin"
    trip.set("offer", {"price": 99}, ttl=3600)
    trip.set("location", "SF", ttl=7200, confirm_after=600)  # due for a check: copied as such
    trip.user["home"] = "SF"
    for n in range(30):
        trip.add_message("user", f"question {n} about Berlin")
        trip.add_message("assistant", None, tool_calls=[{"id": f"c{n}", "type": "function"}])
        trip.add_message("tool", f"result {n}", tool_call_id=f"c{n}")
    trip.compact(lambda messages: f"{len(messages)} messages about Berlin", keep_last=9)
    trip.save()
    trip.get_history(max_tokens=60, relevant_to="Berlin", embed=embed, k=2)  # stored: cached
    flights = trip.child("flights")
    flights["to"] = "Berlin"
    flights.add_message("user", "the cheapest one")
    flights.child("seats").add_message("user", "aisle, please")
    trip.save()
    other = store.create(user_id="other")
    other.add_message("user", "hello")
    other.save()
    anonymous = store.create()
    anonymous["k"] = [1, 2]
    anonymous.save()
    return [trip.id, other.id, anonymous.id]


def snapshot(store: Store, session_id: str) -> dict[str, Any]:
    """Everything stored about a session tree, decoded: what a copy must carry over."""
    now = store.clock()
    header = store.backend.read_header(session_id, now)
    assert header is not None, session_id

    def decode(value: bytes) -> Any:
        return store.codec.decode(value, session_id=session_id)

    raw = store.backend.read_messages(session_id, 0, header.message_count)
    records = [store.codec.decode_message(session_id, data) for data in raw]
    state = store.codec.decode_state(session_id, header.state, now)  # names may be sealed
    facts: dict[str, Any] = {
        "user": state.user_id if META_KEY in state.stored else header.user_id,
        "created": header.created_at,
        "expires": header.expires_at,
        "tokens": header.token_total,
        "messages": [(r.message, r.tokens, r.created_at) for r in records],
        "state": {
            name: (value, e.updated_at, e.expires_at, e.confirm_after)
            for name, value in state.values.items()
            if (e := state.entries[name])
        },
        "summary": None
        if header.summary is None
        else (decode(header.summary.value), header.summary.upto, header.summary.tokens),
        "vectors": {
            p: decode_vector(store, session_id, v)
            for p, v in store.backend.read_vectors(session_id, 0, header.message_count).items()
        },
        "children": {name: snapshot(store, f"{session_id}/{name}") for name in header.children},
    }
    if header.user_id is not None and "/" not in session_id:
        user = store.backend.read_header(user_record_id(header.user_id), now)
        facts["user_state"] = (
            None
            if user is None
            else store.codec.decode_state(user.session_id, user.state, now).values
        )
    return facts


def decode_vector(store: Store, session_id: str, value: bytes) -> tuple[list[float], int | None]:
    row, check = store.codec.decode_vector(session_id, value)
    return list(row), check


def test_a_copy_chain_through_every_backend_keeps_everything(
    tmp_path: Path, clock: FakeClock
) -> None:
    """memory -> diskcache (key 1) -> Redis (key 2) -> PostgreSQL (plain) -> memory (key 3)."""
    stores = [
        Store("memory://", clock=clock),
        Store(f"diskcache://{tmp_path / 'disk'}", encryption_key=generate_key(), clock=clock),
        Store(redis_server.isolated_url(tmp_path.name), encryption_key=generate_key(), clock=clock),
        Store(postgres_server.isolated_url(), clock=clock),
        Store("memory://", encryption_key=generate_key(), clock=clock),
    ]
    try:
        ids = build(stores[0])
        original = {sid: snapshot(stores[0], sid) for sid in ids}
        assert original[ids[0]]["vectors"]  # the fixture really holds each kind of record
        assert original[ids[0]]["summary"] is not None
        for source, target in pairwise(stores):
            report = copy_sessions(source, target)
            assert report.ok
            assert (report.sessions, report.users, report.skipped) == (5, 1, 0)
            assert report.messages == 90 + 3
        for sid in ids:
            assert snapshot(stores[-1], sid) == original[sid]
        assert sorted(stores[-1].user_sessions("harsh")) == [ids[0]]
    finally:
        for store in stores:
            store.close()


def test_copying_again_skips_what_is_there(tmp_path: Path, clock: FakeClock) -> None:
    source = Store("memory://", clock=clock)
    target = Store(f"diskcache://{tmp_path / 'disk'}", clock=clock)
    build(source)
    copy_sessions(source, target)
    again = copy_sessions(source, target)
    assert (again.sessions, again.messages, again.skipped, again.ok) == (0, 0, 5, True)
    target.close()


def test_an_interrupted_copy_resumes_where_it_stopped(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("statemw.transfer.BATCH", 10)
    source = Store("memory://", clock=clock)
    session = source.create()
    for n in range(25):
        session.add_message("user", f"m{n}")
    session.save()
    target = Store(postgres_server.isolated_url(), clock=clock)
    try:
        commit = target.backend.commit
        calls = 0

        def dies_on_the_second_batch(delta: Delta) -> Committed:
            nonlocal calls
            calls += 1
            if calls == 2:
                raise StoreUnavailable("the network went away")
            return commit(delta)

        monkeypatch.setattr(target.backend, "commit", dies_on_the_second_batch)
        with pytest.raises(StoreUnavailable):
            copy_sessions(source, target)
        assert len(target.load(session.id).messages) == 10

        monkeypatch.setattr(target.backend, "commit", commit)
        report = copy_sessions(source, target)
        assert (report.messages, report.ok) == (15, True)
        assert snapshot(target, session.id) == snapshot(source, session.id)
    finally:
        target.close()


def test_a_target_session_with_another_history_is_left_alone(clock: FakeClock) -> None:
    source, target = Store("memory://", clock=clock), Store("memory://", clock=clock)
    mine = source.create(session_id="shared-id")
    mine.add_message("user", "from the source")
    mine.save()
    clock.advance(5)
    theirs = target.create(session_id="shared-id")
    theirs.add_message("user", "already in the target")
    theirs.save()

    report = copy_sessions(source, target)
    assert report.conflicts == ["shared-id"]
    assert not report.ok
    assert target.load("shared-id").messages[0]["content"] == "already in the target"


def test_a_copy_can_take_one_user_or_one_session(clock: FakeClock) -> None:
    source = Store("memory://", clock=clock)
    trip, _, anonymous = build(source)

    by_user = Store("memory://", clock=clock)
    copy_sessions(source, by_user, user_id="harsh")
    assert list(by_user.session_ids()) == [trip]
    assert by_user.user_state("harsh")["home"] == "SF"

    by_session = Store("memory://", clock=clock)
    copy_sessions(source, by_session, session_id=anonymous)
    assert list(by_session.session_ids()) == [anonymous]


# -- the command -----------------------------------------------------------------------------------


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


def test_the_copy_command_re_encrypts_into_postgres_and_verifies(tmp_path: Path) -> None:
    disk, pg = f"diskcache://{tmp_path / 'disk'}", postgres_server.isolated_url()
    old_key, new_key = generate_key(), generate_key()
    source = Store(disk, encryption_key=old_key)
    session = source.create(user_id="harsh")
    session["destination"] = "Berlin"
    session.add_message("user", "Find flights to Berlin")
    session.save()
    source.close()

    code, out = run(
        "copy", "--from", disk, "--to", pg, f"--from-key={old_key}", f"--to-key={new_key}"
    )
    assert code == 0, out
    assert "copied 1 session(s) and 1 message(s)" in out
    assert "verified" in out
    target = Store(pg, encryption_key=new_key)
    assert target.load(session.id)["destination"] == "Berlin"
    target.close()
    with pytest.raises(DecryptionError):
        Store(pg, encryption_key=old_key).load(session.id)

    code, out = run(
        "copy", "--from", disk, "--to", pg, f"--from-key={old_key}", f"--to-key={new_key}"
    )
    assert (code, "1 already there" in out) == (0, True)


def test_the_copy_command_takes_a_key_that_begins_with_a_dash(tmp_path: Path) -> None:
    disk, other = f"diskcache://{tmp_path / 'a'}", f"diskcache://{tmp_path / 'b'}"
    key = "-" + generate_key()[1:]
    source = Store(disk)
    session = source.create()
    session["k"] = "v"
    session.save()
    source.close()

    code, out = run("copy", "--from", disk, "--to", other, f"--to-key={key}")
    assert code == 0, out
    assert Store(other, encryption_key=key).load(session.id)["k"] == "v"


def test_the_copy_command_reads_keys_from_the_environment_and_can_decrypt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sealed, plain = f"diskcache://{tmp_path / 'a'}", f"diskcache://{tmp_path / 'b'}"
    key = generate_key()
    source = Store(sealed, encryption_key=key)
    session = source.create()
    session["k"] = "v"
    session.save()
    source.close()
    monkeypatch.setenv("STATEMW_FROM_ENCRYPTION_KEY", key)

    code, _ = run("copy", "--from", sealed, "--to", plain, "--to-plain")
    assert code == 0
    assert Store(plain).load(session.id)["k"] == "v"


def test_the_copy_command_without_the_source_key_fails_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sealed, other = f"diskcache://{tmp_path / 'a'}", f"diskcache://{tmp_path / 'b'}"
    source = Store(sealed, encryption_key=generate_key())
    session = source.create()
    session["k"] = "v"
    session.save()
    source.close()
    code, _ = run("copy", "--from", sealed, "--to", other)
    assert code == 2
    assert "encrypted" in capsys.readouterr().err


def test_the_copy_command_exits_1_when_a_session_is_left_alone(tmp_path: Path) -> None:
    a, b = f"diskcache://{tmp_path / 'a'}", f"diskcache://{tmp_path / 'b'}"
    for url in (a, b):
        store = Store(url)
        store.create(session_id="same-id").save()
        store.close()
    code, out = run("copy", "--from", a, "--to", b)
    assert code == 1
    assert "left alone: same-id" in out


def test_the_copy_command_takes_one_user_or_one_session_between_postgres_stores(
    tmp_path: Path,
) -> None:
    """--user: that user's sessions (with their trees) and shared state; --session: that tree."""
    pg, by_user, by_session = (postgres_server.isolated_url() for _ in range(3))
    source = Store(pg)
    try:
        trip, other, anonymous = build(source)
        expected = {sid: snapshot(source, sid) for sid in (trip, other, anonymous)}
    finally:
        source.close()

    code, out = run("copy", "--from", pg, "--to", by_user, "--user", "harsh")
    assert code == 0, out
    # the trip and its two sub-sessions: 90 messages and one in each sub-session
    assert "copied 3 session(s) and 92 message(s), shared state of 1 user(s)" in out
    code, out = run("copy", "--from", pg, "--to", by_session, "--session", trip)
    assert code == 0, out
    assert "copied 3 session(s) and 92 message(s)" in out
    code, out = run(
        "copy", "--from", pg, "--to", f"diskcache://{tmp_path / 'd'}", "--session", other
    )
    assert (code, "copied 1 session(s) and 1 message(s)" in out) == (0, True)

    for url, copied in ((by_user, [trip]), (by_session, [trip])):
        target = Store(url)
        try:
            assert list(target.session_ids()) == copied
            assert snapshot(target, trip) == expected[trip]  # sub-sessions and all
        finally:
            target.close()
    target = Store(f"diskcache://{tmp_path / 'd'}")
    assert list(target.session_ids()) == [other]
    assert snapshot(target, other) == expected[other]
    target.close()

    code, out = run("copy", "--from", pg, "--to", by_user, "--user", "harsh")
    assert code == 0
    assert out.startswith(
        "copied 0 session(s) and 0 message(s), shared state of 0 user(s); 3 already"
    )
