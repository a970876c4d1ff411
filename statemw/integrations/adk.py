"""statemw as Google ADK's session service (`pip install 'statemw[adk]'`).

    from google.adk.runners import Runner
    from statemw.integrations.adk import StatemwSessionService

    runner = Runner(agent=agent, app_name="weather", session_service=StatemwSessionService())

An ADK session is the statemw session of the same id, owned by the ADK user as its statemw user
(so `store.forget_user(user_id)` erases it). Each event is one message, `{"role", "event"}`: the
role ("user" for the user's events, "assistant" for the agents') and the event as ADK's JSON.
State follows ADK's prefixes:

    key          the statemw session's own state (`session["key"]`)
    user:key     user-scoped state, `session.user["<app>/key"]`: shared by the user's sessions
    app:key      app-wide state: the state of one statemw session per app, `adk-app.<app>`
    temp:key     ephemeral: never written (ADK's rule); with temp_ttl=, kept that many seconds

`get_session(config=GetSessionConfig(num_recent_events=N))` returns the newest whole groups of at
most N events (a function call never without its response) and reads only the pages it needs.
Two runners appending to one session lose nothing: each append saves only its own event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events.event import Event
from google.adk.platform import uuid as platform_uuid
from google.adk.sessions import Session as AdkSession
from google.adk.sessions.base_session_service import (
    BaseSessionService,
    GetSessionConfig,
    ListSessionsResponse,
)
from google.adk.sessions.state import State
from pydantic_core import to_jsonable_python

from statemw._default import default_store
from statemw.errors import InvalidValue, SessionNotFound
from statemw.integrations._bridge import statemw_session
from statemw.integrations._window import NO_LINKS, PAGE, Rules, read_window
from statemw.messages import Message
from statemw.session import Session
from statemw.store import Store

APP_KEY = "statemw.adk.app"
"""The state key naming the ADK app a statemw session belongs to (hidden from ADK's state)."""

APP_SESSION = "adk-app.{app}"
"""The id of the statemw session that holds an app's `app:` state."""

ANONYMOUS = "anonymous"
"""The ADK user id of a bound statemw session that has no user (its `user:` state stays in it)."""


def to_message(event: Event) -> Message:
    """An ADK event as the statemw message that stores it."""
    role = "user" if event.author == "user" else "assistant"
    return {"role": role, "event": event.model_dump(mode="json", exclude_none=True)}


def to_event(message: Mapping[str, Any]) -> Event:
    """The ADK event a stored message holds."""
    data = message.get("event")
    if not isinstance(data, Mapping):
        raise InvalidValue(f"not an ADK event message: {sorted(message)}")
    return Event.model_validate(data)


def _parts(message: Message) -> list[Any]:
    event = message.get("event")
    content = event.get("content") if isinstance(event, Mapping) else None
    parts = content.get("parts") if isinstance(content, Mapping) else None
    return parts if isinstance(parts, list) else []


def links(message: Message) -> tuple[frozenset[str], frozenset[str]]:
    """The function calls an event makes and the calls its function responses answer."""
    calls: set[str] = set()
    answers: set[str] = set()
    for part in _parts(message):
        if not isinstance(part, Mapping):
            continue
        for field, ids in (("function_call", calls), ("function_response", answers)):
            value = part.get(field)
            if isinstance(value, Mapping) and isinstance(value.get("id"), str):
                ids.add(value["id"])
    return (frozenset(calls), frozenset(answers)) if calls or answers else NO_LINKS


RULES = Rules(links)


def _timestamp(message: Message) -> float:
    event = message.get("event")
    value = event.get("timestamp") if isinstance(event, Mapping) else None
    return float(value) if isinstance(value, int | float) else 0.0


def _split(state: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """ADK state -> (session, user, app) parts without their prefixes; temp: keys left out."""
    session: dict[str, Any] = {}
    user: dict[str, Any] = {}
    app: dict[str, Any] = {}
    for key, value in state.items():
        if key.startswith(State.APP_PREFIX):
            app[key.removeprefix(State.APP_PREFIX)] = value
        elif key.startswith(State.USER_PREFIX):
            user[key.removeprefix(State.USER_PREFIX)] = value
        elif not key.startswith(State.TEMP_PREFIX):
            session[key] = value
    return session, user, app


def _plain(value: Any) -> Any:
    """A state value as JSON data (as ADK's database service stores it)."""
    return to_jsonable_python(value, fallback=repr)


class StatemwSessionService(BaseSessionService):
    """ADK's `BaseSessionService` over a statemw Store (None: the configured default store).

    temp_ttl: keep `temp:` state that many seconds as statemw ephemeral state (per-key TTL)
    instead of dropping it after the invocation, e.g. to carry it to the next request.
    """

    def __init__(self, *, store: Store | None = None, temp_ttl: float | None = None) -> None:
        if temp_ttl is not None and temp_ttl <= 0:
            raise InvalidValue(f"temp_ttl must be positive seconds, got {temp_ttl}")
        self._store = store
        self.temp_ttl = temp_ttl
        self._bound: Session | None = None
        self._bound_app: str | None = None

    @classmethod
    def from_session(
        cls, session: Mapping[str, Any], *, app_name: str, **options: Any
    ) -> StatemwSessionService:
        """A service for which `session` itself (e.g. `request.session`) is the ADK session of
        `app_name` with the id `session.id` and user `session.user_id`: its events join the
        session's messages and are saved with it, by the web middleware or your `save()`."""
        session = statemw_session(session)
        service = cls(store=session.store, **options)
        service._bound = session
        service._bound_app = app_name
        if session.get(APP_KEY) != app_name:
            session[APP_KEY] = app_name
        return service

    @property
    def user_id(self) -> str:
        """The ADK user id of the bound session (pass it to `runner.run_async`)."""
        if self._bound is None:
            raise InvalidValue("user_id belongs to a service made by from_session()")
        return self._bound.user_id or ANONYMOUS

    @property
    def store(self) -> Store:
        return self._store if self._store is not None else default_store()

    # -- loading and building ADK sessions -----------------------------------------------------

    async def _load(self, app_name: str, user_id: str, session_id: str) -> Session | None:
        bound = self._bound
        if bound is not None and session_id == bound.id:
            ok = app_name == self._bound_app and user_id == (bound.user_id or ANONYMOUS)
            return bound if ok else None
        try:
            session = await self.store.aget(session_id)
        except InvalidValue:  # an id statemw cannot hold was never stored here
            return None
        if session is None or session.get(APP_KEY) != app_name or session.user_id != user_id:
            return None
        return session

    async def _app_state(self, app_name: str) -> dict[str, Any]:
        app = await self.store.aget(APP_SESSION.format(app=app_name))
        return {} if app is None else dict(app)

    def _user_state(self, session: Session, app_name: str) -> dict[str, Any]:
        if session.user_id is None:  # a bound anonymous session keeps user: keys itself
            return {
                k.removeprefix(State.USER_PREFIX): v
                for k, v in session.items()
                if k.startswith(State.USER_PREFIX)
            }
        prefix = f"{app_name}/"
        return {k.removeprefix(prefix): v for k, v in session.user.items() if k.startswith(prefix)}

    async def _adk_session(
        self, session: Session, app_name: str, user_id: str, events: list[Event]
    ) -> AdkSession:
        state = {
            k: v
            for k, v in session.items()
            if k != APP_KEY and not (session.user_id is None and k.startswith(State.USER_PREFIX))
        }
        for key, value in (await self._app_state(app_name)).items():
            state[State.APP_PREFIX + key] = value
        for key, value in self._user_state(session, app_name).items():
            state[State.USER_PREFIX + key] = value
        if events:
            updated = events[-1].timestamp
        else:
            last = await session.fetch_messages(len(session.messages) - 1)
            updated = _timestamp(last[0]) if last else session.created_at or 0.0
        return AdkSession(
            id=session.id,
            app_name=app_name,
            user_id=user_id,
            state=state,
            events=events,
            last_update_time=updated,
        )

    async def _write_state(
        self, session: Session, app_name: str, delta: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Put a state delta's session and user parts into `session`; return the app part."""
        own, user, app = _split(delta)
        for key, value in own.items():
            session[key] = _plain(value)
        for key, value in user.items():
            if session.user_id is None:
                session[State.USER_PREFIX + key] = _plain(value)
            else:
                session.user[f"{app_name}/{key}"] = _plain(value)
        return app

    async def _write_app_state(self, app_name: str, app: Mapping[str, Any]) -> None:
        if not app:
            return
        sid = APP_SESSION.format(app=app_name)
        holder = await self.store.aget(sid) or await self.store.acreate(session_id=sid)
        for key, value in app.items():
            holder[key] = _plain(value)
        await holder.asave()

    async def _save(self, session: Session) -> None:
        if session is not self._bound:
            await session.asave()

    # -- BaseSessionService ----------------------------------------------------------------------

    async def create_session(
        self,
        *,
        app_name: str,
        user_id: str,
        state: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> AdkSession:
        session_id = session_id.strip() if session_id else platform_uuid.new_uuid()
        bound = self._bound
        if bound is not None and session_id == bound.id:
            session = bound
        else:
            if await self.store.aget(session_id) is not None:
                raise AlreadyExistsError(f"Session with id {session_id} already exists.")
            session = await self.store.acreate(user_id, session_id=session_id)
            session[APP_KEY] = app_name
        app = await self._write_state(session, app_name, state or {})
        await self._write_app_state(app_name, app)
        await self._save(session)
        return await self._adk_session(session, app_name, user_id, [])

    async def get_session(
        self,
        *,
        app_name: str,
        user_id: str,
        session_id: str,
        config: GetSessionConfig | None = None,
    ) -> AdkSession | None:
        session = await self._load(app_name, user_id, session_id)
        if session is None:
            return None
        limit = None if config is None else config.num_recent_events
        after = None if config is None else config.after_timestamp
        floor = 0 if after is None else await self._first_after(session, after)
        window = await read_window(session, RULES, floor=floor, limit=limit)
        events = [to_event(m) for m in window.messages]
        return await self._adk_session(session, app_name, user_id, events)

    @staticmethod
    async def _first_after(session: Session, after: float) -> int:
        """The position of the oldest event at or after `after` (events are in time order)."""
        start = len(session.messages)
        while start > 0:
            lo = max(0, start - PAGE)
            page = await session.fetch_messages(lo, start)
            for offset in range(len(page) - 1, -1, -1):
                if _timestamp(page[offset]) < after:
                    return lo + offset + 1
            start = lo
        return 0

    async def list_sessions(
        self, *, app_name: str, user_id: str | None = None
    ) -> ListSessionsResponse:
        if user_id is not None:
            ids = await self.store.auser_sessions(user_id, limit=1 << 30)
        else:
            ids = [sid async for sid in self.store.asession_ids()]
        sessions = []
        for sid in ids:
            try:
                session = await self.store.aget(sid)
            except InvalidValue:
                continue
            if session is None or session.get(APP_KEY) != app_name or session.user_id is None:
                continue
            if user_id is not None and session.user_id != user_id:
                continue
            sessions.append(await self._adk_session(session, app_name, session.user_id, []))
        sessions.sort(key=lambda s: (s.last_update_time, s.user_id, s.id))
        return ListSessionsResponse(sessions=sessions)

    async def delete_session(self, *, app_name: str, user_id: str, session_id: str) -> None:
        session = await self._load(app_name, user_id, session_id)
        if session is not None:
            await session.adelete()

    async def get_user_state(self, *, app_name: str, user_id: str) -> dict[str, Any]:
        prefix = f"{app_name}/"
        user = await self.store.auser_state(user_id)
        return {k.removeprefix(prefix): v for k, v in user.items() if k.startswith(prefix)}

    async def append_event(self, session: AdkSession, event: Event) -> Event:
        if event.partial:
            return event
        if any(e.id == event.id for e in session.events):
            return event  # appended already (a retry): never twice
        delta = event.actions.state_delta if event.actions else {}
        temp = {k: v for k, v in delta.items() if k.startswith(State.TEMP_PREFIX)}
        stored = await self._load(session.app_name, session.user_id, session.id)
        if stored is None:
            raise SessionNotFoundError(f"Session {session.id} not found.")
        await super().append_event(session, event)  # ADK's in-memory update; drops temp: keys
        stored.add_message(to_message(event))
        app = await self._write_state(stored, session.app_name, event.actions.state_delta)
        if self.temp_ttl is not None:
            for key, value in temp.items():
                stored.set(key, _plain(value), ttl=self.temp_ttl)
        try:
            await self._save(stored)
        except SessionNotFound as exc:  # deleted while the agent ran
            raise SessionNotFoundError(f"Session {session.id} not found.") from exc
        await self._write_app_state(session.app_name, app)
        session.last_update_time = event.timestamp
        return event
