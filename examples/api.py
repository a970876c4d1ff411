"""What both demo apps answer, free of any framework: each function takes the session."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, Signer

from examples.agent import begin_turn, remember, respond, stream_answer
from statemw import InvalidValue, Session, Store, UserState
from statemw.state import TrackedState
from statemw.tokens import count_message

STATIC = Path(__file__).parent / "static"
LOGIN_COOKIE = "demo_user"


def demo_store() -> Store:
    """STATEMW_URL, else a diskcache directory beside the working directory. DEMO_CLOCK_FILE
    (tests only) names a file holding seconds to add to the clock, so a browser test can move
    the demo a month ahead without waiting."""
    url = os.environ.get("STATEMW_URL") or "diskcache://" + str(Path.cwd() / ".statemw-demo")
    clock_file = os.environ.get("DEMO_CLOCK_FILE")
    return Store(url, clock=shifted_clock(Path(clock_file)) if clock_file else time.time)


def shifted_clock(path: Path) -> Callable[[], float]:
    """time.time() plus the seconds written in `path` (0 while there is no such file)."""

    def clock() -> float:
        try:
            offset = float(path.read_text() or 0)
        except FileNotFoundError:
            offset = 0.0
        return time.time() + offset

    return clock


def demo_secret() -> str:
    """DEMO_SECRET, else one kept in .statemw-demo.secret so cookies survive a restart."""
    if os.environ.get("DEMO_SECRET"):
        return os.environ["DEMO_SECRET"]
    path = Path.cwd() / ".statemw-demo.secret"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


class Login:
    """The demo's stand-in for real authentication: a signed cookie holding a user name."""

    def __init__(self, secret: str) -> None:
        self._signer = Signer(secret, salt="demo-login")

    def cookie_value(self, user: str) -> str:
        return self._signer.sign(user).decode()

    def user(self, cookie_value: str | None) -> str | None:
        if not cookie_value:
            return None
        try:
            return self._signer.unsign(cookie_value).decode()
        except BadSignature:
            return None


def check_user_name(name: Any) -> str:
    if not isinstance(name, str) or not 0 < len(name.strip()) <= 40:
        raise InvalidValue("a user name is 1 to 40 characters")
    return name.strip()


def _said(text: Any) -> str:
    if not isinstance(text, str) or not text.strip():
        raise InvalidValue("say something")
    return text.strip()[:2000]


def chat(session: Session, text: Any) -> dict[str, Any]:
    reply = respond(session, _said(text))
    return {"reply": reply, **state(session)}


def chat_stream(session: Session, text: Any) -> Generator[str, None, None]:
    """The turn begins now (bad input is a 400, not a broken stream); the answer then streams
    and is logged when it ends. The middleware saves both: at the start and at the end."""
    return stream_answer(session, begin_turn(session, _said(text)))


def token_delay() -> float:
    """Seconds between streamed words (DEMO_TOKEN_DELAY), so a person sees the answer arrive."""
    return float(os.environ.get("DEMO_TOKEN_DELAY", "0.03"))


def state(session: Session) -> dict[str, Any]:
    """Everything the page shows: the conversation, what is remembered, the context window."""
    history = session.get_history()
    return {
        "session": None if session.is_new else session.id,
        "user": session.user_id,
        "messages": [
            {"role": m["role"], "content": m.get("content")} for m in session.messages[-200:]
        ],
        "state": _shown(session),
        "user_state": _shown(session.user) if session.user_id is not None else {},
        "ages": {
            "session": _ages(session),
            "user": _ages(session.user) if session.user_id is not None else {},
        },
        "context": {
            "messages": [
                {"role": m["role"], "content": m.get("content"), "tokens": count_message(m)}
                for m in history
            ],
            "token_count": session.token_count(),
        },
    }


def _shown(state: TrackedState) -> dict[str, Any]:
    """What the page lists as remembered ("_" keys are the assistant's own bookkeeping)."""
    return {k: v for k, v in state.items() if not k.startswith("_")}


def _ages(state: Session | UserState) -> dict[str, dict[str, Any]]:
    """How old each remembered value is, in words, and whether it is due for a check (by the
    store's clock, which the page's own clock need not agree with)."""
    now = state.store.clock()
    ages = {}
    for key in _shown(state):
        updated = state.updated_at(key)
        stale_at = state.stale_at(key)
        ages[key] = {
            "age": "" if updated is None else age_in_words(now - updated),
            "stale": stale_at is not None and stale_at <= now,
        }
    return ages


def age_in_words(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n > 1 else ''} ago"
    return "just now"


def _scope(session: Session, scope: str) -> TrackedState:
    if scope == "session":
        return session
    if scope == "user" and session.user_id is not None:
        return session.user
    raise InvalidValue(f"unknown scope {scope!r} (session, or user when logged in)")


def edit(session: Session, scope: str, key: str, value: Any) -> dict[str, Any]:
    """The user corrects what is remembered (the seed's answer to stale state)."""
    target = _scope(session, scope)
    if key not in target:
        raise InvalidValue(f"nothing remembered under {key!r}")
    remember(target, key, value)  # a corrected fact is fresh, with its own check policy
    return state(session)


def forget_item(session: Session, scope: str, key: str) -> dict[str, Any]:
    target = _scope(session, scope)
    target.pop(key, None)
    return state(session)


def followed(store: Store, session: Session) -> str | None:
    """The conversation a device's live feed follows: the user's current one, else its own."""
    if session.user_id is not None:
        return store.current_session_id(session.user_id)
    return None if session.is_new else session.id


async def afollowed(store: Store, session: Session) -> str | None:
    if session.user_id is not None:
        return await store.acurrent_session_id(session.user_id)
    return None if session.is_new else session.id


def forget_me(session: Session) -> None:
    """Delete the conversation, and when logged in every session and fact of the user."""
    if session.user_id is not None:
        session.store.forget_user(session.user_id)
    session.delete()
