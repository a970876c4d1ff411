"""For any sequence of set / confirm / delete / clock jumps / save / load, what is stale and how
old each value is match a simple model: on every backend, encrypted or not (issue 14).

Three places hold facts: the session, its user, and a sub-session ("child"), which reads through
to the session: it sees the session's stale keys as its parent's (hidden by a key of its own),
and its `updated_at` and `confirm` go to the session for a key it does not hold itself."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from statemw import Session, Store, generate_key
from statemw.state import TrackedState
from tests.support import FakeClock, store_url

SCOPES = ("session", "user", "child")
KEYS = ("a", "b")
keys = st.sampled_from(KEYS)
scopes = st.sampled_from(SCOPES)
spans = st.sampled_from([1, 5, 20])  # few, so jumps land on, before and after each boundary
seconds = st.none() | spans
_machines = itertools.count()


@dataclass
class Fact:
    set_at: float
    expires_at: float | None
    confirm_after: float | None

    def live(self, now: float) -> bool:
        return self.expires_at is None or self.expires_at > now

    def stale(self, now: float) -> bool:
        return self.confirm_after is not None and self.set_at + self.confirm_after <= now


class StaleModel(RuleBasedStateMachine):
    store: Store  # given by the test, per backend
    clock: FakeClock

    def __init__(self) -> None:
        super().__init__()
        # a user of its own: id(self) can repeat once an earlier machine is freed, and the
        # earlier machine's user state would then leak into this one
        self.session: Session = self.store.create(user_id=f"u-{next(_machines)}")
        self.child: Session = self.session.child("c")
        self.facts: dict[tuple[str, str], Fact] = {}

    def target(self, scope: str) -> TrackedState:
        if scope == "child":
            return self.child
        return self.session if scope == "session" else self.session.user

    def holder(self, scope: str, key: str) -> str | None:
        """Where `key` read in `scope` lives: a child reads its own, else the session's."""
        if self.live(scope, key):
            return scope
        if scope == "child" and self.live("session", key):
            return "session"
        return None

    def live(self, scope: str, key: str) -> bool:
        fact = self.facts.get((scope, key))
        return fact is not None and fact.live(self.clock.now)

    @rule(scope=scopes, key=keys, value=st.integers(0, 9), ttl=seconds, confirm_after=seconds)
    def set_key(
        self, scope: str, key: str, value: int, ttl: int | None, confirm_after: int | None
    ) -> None:
        self.target(scope).set(key, value, ttl=ttl, confirm_after=confirm_after)
        now = self.clock.now
        self.facts[scope, key] = Fact(now, None if ttl is None else now + ttl, confirm_after)

    @rule(scope=scopes, key=keys, value=st.integers(0, 9))
    def assign_key(self, scope: str, key: str, value: int) -> None:
        self.target(scope)[key] = value
        self.facts[scope, key] = Fact(self.clock.now, None, None)

    @rule(scope=scopes, key=keys)
    def confirm_key(self, scope: str, key: str) -> None:
        holder = self.holder(scope, key)
        if holder is not None:
            self.target(scope).confirm(key)
            self.facts[holder, key].set_at = self.clock.now

    @rule(scope=scopes, key=keys)
    def delete_key(self, scope: str, key: str) -> None:
        if self.live(scope, key):
            del self.target(scope)[key]
            del self.facts[scope, key]

    @rule(seconds=spans)
    def time_passes(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule()
    def save(self) -> None:
        self.session.save()

    @rule()
    def save_and_reload(self) -> None:
        self.session.save()
        self.session = self.store.load(self.session.id)
        self.child = self.session.child("c")

    @invariant()
    def stale_keys_match(self) -> None:
        now = self.clock.now
        stale = {sk for sk, fact in self.facts.items() if fact.live(now) and fact.stale(now)}
        expected = {(scope, key) for scope, key in stale if scope != "child"}
        assert {(s.scope, str(s)) for s in self.session.stale_keys()} == expected

    @invariant()
    def the_childs_stale_keys_match(self) -> None:
        now = self.clock.now
        stale = {sk for sk, fact in self.facts.items() if fact.live(now) and fact.stale(now)}
        expected = {("session", key) for scope, key in stale if scope == "child"}
        expected |= {
            ("parent", key)
            for scope, key in stale
            if scope == "session" and not self.live("child", key)
        }
        expected |= {("user", key) for scope, key in stale if scope == "user"}
        assert {(s.scope, str(s)) for s in self.child.stale_keys()} == expected

    @invariant()
    def ages_match(self) -> None:
        for scope in SCOPES:
            for key in KEYS:
                holder = self.holder(scope, key)
                expected = None if holder is None else self.facts[holder, key].set_at
                assert self.target(scope).updated_at(key) == expected


@pytest.fixture(params=[False, True], ids=["plain", "encrypted"])
def model_store(
    request: pytest.FixtureRequest, backend_kind: str, tmp_path: Path, clock: FakeClock
) -> Iterator[Store]:
    key = generate_key() if request.param else None
    store = Store(store_url(backend_kind, tmp_path), clock=clock, encryption_key=key)
    yield store
    store.close()


def test_stale_keys_and_ages_match_a_simple_model(model_store: Store, clock: FakeClock) -> None:
    fake_clock: FakeClock = clock

    class OnThisStore(StaleModel):
        store = model_store
        clock = fake_clock

    run_state_machine_as_test(
        OnThisStore,
        settings=settings(max_examples=40, stateful_step_count=30, deadline=None),
    )
