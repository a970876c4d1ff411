"""statemw as the OpenAI Agents SDK's session store (`pip install 'statemw[openai-agents]'`).

    from agents import Agent, Runner
    from statemw.integrations.openai_agents import StatemwSession

    session = StatemwSession("conversation-42")            # the configured default store
    result = await Runner.run(agent, "Find flights to Berlin", session=session)

Each Responses-API input item is one statemw message, stored as given: an item with a `role` (a
message) is the message itself; an item without one (function_call, function_call_output,
reasoning, ...) gets `"role": "item"`, which is taken off again on the way out, so items come back
identical. `get_items(limit=N)` returns the newest whole groups (a call with all its outputs, a
reasoning item with the item after it) of at most N items, so history never starts inside a
function_call/output pair. `max_tokens=` bounds it by tokens too; `compact_at=` with `summarize=`
summarizes older items once (statemw compaction: originals kept, the summary sent instead).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from agents.memory import SessionSettings
from agents.memory.session_settings import resolve_session_limit

from statemw._default import default_store
from statemw.errors import ConflictError, InvalidValue, SessionNotFound
from statemw.formats import SUMMARY_PREFIX
from statemw.integrations._bridge import statemw_session
from statemw.integrations._window import NO_LINKS, Rules, read_window, split
from statemw.messages import Message
from statemw.session import Session
from statemw.store import Store
from statemw.tokens import count_message

if TYPE_CHECKING:
    from agents.items import TResponseInputItem
else:
    TResponseInputItem = dict[str, Any]

ROLELESS = "item"
"""The role a stored item without one gets (function calls, outputs, reasoning, ...)."""

Summarize = Callable[[list[Any]], str | Awaitable[str]]
"""Items (the previous summary first, if any) -> the summary text; may be a coroutine."""


def to_message(item: Mapping[str, Any]) -> Message:
    """A Responses-API input item as the statemw message that stores it (a copy)."""
    if "role" not in item:
        return {"role": ROLELESS, **item}
    if item["role"] == ROLELESS:
        raise InvalidValue(f"an item's role cannot be {ROLELESS!r}: statemw reserves it")
    return dict(item)


def to_item(message: Mapping[str, Any]) -> TResponseInputItem:
    """The item a stored message holds: the message, less the role statemw added."""
    if message.get("role") == ROLELESS:
        return cast("TResponseInputItem", {k: v for k, v in message.items() if k != "role"})
    return cast("TResponseInputItem", dict(message))


def links(message: Message) -> tuple[frozenset[str], frozenset[str]]:
    """Which calls an item makes and answers: `*_call` items open a call_id, `*_output` items
    answer one (a local shell output names its call by `id`)."""
    kind = message.get("type")
    if not isinstance(kind, str):
        return NO_LINKS
    call_id = message.get("call_id")
    if kind.endswith("_output"):
        ids = {call_id} if isinstance(call_id, str) else set()
        if kind == "local_shell_call_output" and isinstance(message.get("id"), str):
            ids.add(message["id"])
        return frozenset(), frozenset(ids)
    if isinstance(call_id, str):
        return frozenset({call_id}), frozenset()
    return NO_LINKS


def leads(message: Message) -> bool:
    """A reasoning item goes to the model only with the item it led to."""
    return message.get("type") == "reasoning"


RULES = Rules(links, leads)


class StatemwSession:
    """The Agents SDK's `Session` protocol over a statemw session named `session_id`.

    store: where it lives (None: the configured default store). user_id: the statemw user a new
    session belongs to (so `store.forget_user` erases it). session_settings: the SDK's settings
    (`limit` applies when get_items is called without one). max_tokens: get_items returns at most
    this many tokens (whole groups, at least the newest). compact_at + summarize: after an append
    that takes the history over compact_at tokens, all but the last keep_last items are summarized.

    Each call loads the session and saves what it changed (a delta: appended items only), so two
    runners on one session lose nothing. `from_session` binds to a session you already hold (the
    web request's); its changes are then saved with it, by the middleware or your `save()`.
    """

    def __init__(
        self,
        session_id: str,
        *,
        store: Store | None = None,
        user_id: str | None = None,
        session_settings: SessionSettings | None = None,
        max_tokens: int | None = None,
        compact_at: int | None = None,
        summarize: Summarize | None = None,
        keep_last: int = 10,
    ) -> None:
        if (compact_at is None) != (summarize is None):
            raise InvalidValue("compact_at and summarize go together")
        if max_tokens is not None and max_tokens <= 0:
            raise InvalidValue(f"max_tokens must be positive, got {max_tokens}")
        self.session_id = session_id
        self.session_settings = session_settings
        self.user_id = user_id
        self.max_tokens = max_tokens
        self.compact_at = compact_at
        self.summarize = summarize
        self.keep_last = keep_last
        self._store = store
        self._bound: Session | None = None

    @classmethod
    def from_session(cls, session: Mapping[str, Any], **options: Any) -> StatemwSession:
        """The SDK session over `session` itself (e.g. `request.session` in a web handler): the
        agent's items join its messages and are saved with it."""
        session = statemw_session(session)
        adapter = cls(session.id, store=session.store, user_id=session.user_id, **options)
        adapter._bound = session
        return adapter

    @property
    def store(self) -> Store:
        return self._store if self._store is not None else default_store()

    def __repr__(self) -> str:
        return f"<StatemwSession {self.session_id!r}>"

    async def _open(self) -> Session:
        if self._bound is not None:
            return self._bound
        session = await self.store.aget(self.session_id)
        if session is None:
            session = await self.store.acreate(self.user_id, session_id=self.session_id)
        return session

    # -- the SDK's Session protocol --------------------------------------------------------------

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The newest whole groups of at most `limit` items, oldest first (all when None)."""
        limit = resolve_session_limit(limit, self.session_settings)
        if limit is not None and limit < 0:
            raise InvalidValue(f"limit must be >= 0, got {limit}")
        session = await self._open()
        return await self._items(session, limit)

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append the items (one save: appends from other runners are kept, in commit order)."""
        if not items:
            return
        messages = [to_message(item) for item in items]
        session = await self._open()
        for message in messages:
            session.add_message(message)
        if self._bound is None:
            try:
                await session.asave()
            except SessionNotFound:  # cleared or expired since we loaded it: start it again
                session = await self.store.acreate(self.user_id, session_id=self.session_id)
                for message in messages:
                    session.add_message(message)
                await session.asave()
        await self._maybe_compact(session)

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove and return the newest item (None when empty).

        statemw's log is append-only, so this rewrites it (O(n)); a compare-and-set save makes
        it safe against a concurrent append (retried)."""
        while True:
            session = await self._open()
            n = len(session.messages)
            if n == 0:
                return None
            kept = await session.fetch_messages(0, n)
            last = kept.pop()
            summary = session.summary
            text = session.summary_message()
            session.messages = []  # then re-add: a whole-log replacement, never read as a summary
            for message in kept:
                session.add_message(message)
            if summary is not None and text is not None and 0 < summary.upto <= len(kept):
                session.set_summary(str(text["content"]), upto=summary.upto)
            if self._bound is not None:
                return to_item(last)
            try:
                await session.asave(strict=True)
            except ConflictError:
                continue  # another runner saved meanwhile: pop from what is there now
            return to_item(last)

    async def clear_session(self) -> None:
        """Remove every item (the statemw session's state stays)."""
        session = await self._open()
        if len(session.messages) == 0 and session.summary is None:
            return
        session.messages = []
        if self._bound is None:
            with contextlib.suppress(SessionNotFound):  # deleted meanwhile: empty already
                await session.asave()

    # -- windows and compaction --------------------------------------------------------------------

    async def _items(self, session: Session, limit: int | None) -> list[TResponseInputItem]:
        if limit == 0:
            return []
        summary = session.summary
        summary_item = None if summary is None else self._summary_item(session)
        reserved = 0
        if summary_item is not None:
            reserved = count_message(summary_item, self.store.count_tokens)
        window = await read_window(
            session,
            RULES,
            floor=0 if summary is None else summary.upto,
            limit=limit,
            max_tokens=self.max_tokens,
            reserved=reserved,
        )
        items = [to_item(m) for m in window.messages]
        room = limit is None or len(items) < limit
        if summary_item is not None and window.complete and room:
            items.insert(0, summary_item)
        return items

    @staticmethod
    def _summary_item(session: Session) -> TResponseInputItem | None:
        message = session.summary_message()
        if message is None:
            return None
        return {"role": "system", "content": SUMMARY_PREFIX + str(message["content"])}

    async def _maybe_compact(self, session: Session) -> None:
        if self.compact_at is None or session.token_count() <= self.compact_at:
            return
        await self.compact(session)

    async def compact(self, session: Session | None = None) -> bool:
        """Summarize all but the last `keep_last` items (whole groups) with `summarize`; the
        originals stay in the statemw session. False when there was nothing to summarize."""
        if self.summarize is None:
            raise InvalidValue("compact() needs summarize= (items -> summary text)")
        session = session if session is not None else await self._open()
        summary = session.summary
        floor = 0 if summary is None else summary.upto
        total = len(session.messages)
        messages = await session.fetch_messages(floor, total)
        boundary = floor
        for group in split(messages, RULES):  # cut only between groups
            if floor + group.start > total - self.keep_last:
                break
            boundary = floor + group.start
        if boundary <= floor:
            return False
        previous = self._summary_item(session)
        covered = [to_item(m) for m in messages[: boundary - floor]]
        text = self.summarize(([previous] if previous else []) + covered)
        if inspect.isawaitable(text):
            text = await text
        if not isinstance(text, str) or not text:
            raise InvalidValue("summarize() must return the summary text (a non-empty str)")
        session.set_summary(text, upto=boundary)
        if self._bound is None:
            await session.asave()
        return True


def items_of(messages: Sequence[Mapping[str, Any]]) -> list[TResponseInputItem]:
    """The items a list of stored messages holds (e.g. `session.messages[-10:]`)."""
    return [to_item(m) for m in messages]
