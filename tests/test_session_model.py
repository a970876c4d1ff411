"""A Session behaves like a plain dict plus a list, across saves, reloads and time."""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from statemw import Session, Store
from tests.support import FakeClock

keys = st.sampled_from(["a", "b", "c"])
int64 = st.integers(-(2**63), 2**63 - 1)
values = st.one_of(int64, st.text(max_size=5), st.lists(int64, max_size=3))


class SessionModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.store = Store("memory://", window=3, clock=self.clock)
        self.session: Session = self.store.create()
        self.session.save()
        self.state: dict[str, tuple[Any, float | None]] = {}  # key -> (value, expires_at)
        self.messages: list[str] = []

    def live(self) -> dict[str, Any]:
        return {k: v for k, (v, exp) in self.state.items() if exp is None or exp > self.clock.now}

    @rule(key=keys, value=values)
    def set_key(self, key: str, value: Any) -> None:
        self.session[key] = value
        self.state[key] = (value, None)

    @rule(key=keys, value=values, ttl=st.integers(1, 50))
    def set_ephemeral_key(self, key: str, value: Any, ttl: int) -> None:
        self.session.set(key, value, ttl=ttl)
        self.state[key] = (value, self.clock.now + ttl)

    @rule(key=keys)
    def delete_key(self, key: str) -> None:
        if key in self.live():
            del self.session[key]
            del self.state[key]

    @rule(key=keys)
    def mutate_in_place(self, key: str) -> None:
        value = self.session.get(key)
        if isinstance(value, list):
            value.append(0)
            self.state[key] = (value, self.state[key][1])

    @rule(text=st.text(max_size=8))
    def add_message(self, text: str) -> None:
        self.session.add_message("user", text)
        self.messages.append(text)

    @rule()
    def save(self) -> None:
        self.session.save()

    @rule()
    def save_and_reload(self) -> None:
        self.session.save()
        self.session = self.store.load(self.session.id)

    @rule(seconds=st.integers(1, 30))
    def time_passes(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @invariant()
    def state_matches(self) -> None:
        assert dict(self.session.items()) == self.live()

    @invariant()
    def messages_match(self) -> None:
        assert [m["content"] for m in self.session.messages] == self.messages


SessionModel.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
test_session_behaves_like_its_model = SessionModel.TestCase
