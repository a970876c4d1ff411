"""statemw as a LangChain chat message history (`pip install 'statemw[langchain]'`).

    from langchain_core.runnables.history import RunnableWithMessageHistory
    from statemw.integrations.langchain import StatemwChatMessageHistory

    chain = RunnableWithMessageHistory(runnable, StatemwChatMessageHistory)  # id -> history

Each LangChain message is one statemw message in OpenAI chat shape, so statemw's own windows,
compaction and formats work on it: `role` and `content` as a model reads them, an AI message's
tool calls as OpenAI `tool_calls`, a tool message's `tool_call_id`; everything else the message
carries (its type, id, name, additional_kwargs, response_metadata, usage_metadata, artifact, ...)
under `"langchain"`. It comes back as the same message class with the same fields. Messages the
app added itself (`session.add_message("user", ...)`) read as the matching LangChain class.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    messages_from_dict,
)

from statemw._default import default_store
from statemw.errors import InvalidValue, SessionNotFound
from statemw.formats import SUMMARY_PREFIX
from statemw.integrations._bridge import statemw_session
from statemw.messages import Message
from statemw.session import Session
from statemw.store import Store

ROLES = {
    "human": "user",
    "HumanMessageChunk": "user",
    "ai": "assistant",
    "AIMessageChunk": "assistant",
    "system": "system",
    "SystemMessageChunk": "system",
    "tool": "tool",
    "ToolMessageChunk": "tool",
    "function": "function",
    "FunctionMessageChunk": "function",
}
"""LangChain message type -> the role statemw stores (a ChatMessage keeps its own role)."""

_TOOL_CALL_KEYS = {"name", "args", "id", "type"}


def _openai_call(call: Mapping[str, Any]) -> dict[str, Any]:
    arguments = json.dumps(call.get("args") or {}, ensure_ascii=False, default=str)
    return {
        "id": call.get("id"),
        "type": "function",
        "function": {"name": call.get("name"), "arguments": arguments},
    }


def _lc_call(call: Mapping[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    raw = function.get("arguments")
    try:
        args = json.loads(raw) if isinstance(raw, str) and raw else {}
    except ValueError:
        args = {"arguments": raw}
    return {"name": function.get("name"), "args": args, "id": call.get("id"), "type": "tool_call"}


def _rebuildable(calls: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the OpenAI tool_calls give these LangChain tool calls back exactly."""
    return all(
        set(c) == _TOOL_CALL_KEYS
        and c["type"] == "tool_call"
        and isinstance(c["id"], str)
        and isinstance(c["name"], str)
        and isinstance(c["args"], dict)
        and _lc_call(_openai_call(c)) == c
        for c in calls
    )


def to_message(message: BaseMessage) -> Message:
    """A LangChain message as the statemw message that stores it."""
    data = message.model_dump()
    kind = str(data.get("type") or message.type)
    role = ROLES.get(kind)
    if role is None:
        role = data.get("role") if kind == "chat" else kind
    if not isinstance(role, str) or not role:
        raise InvalidValue(f"cannot store a LangChain {kind!r} message without a role")
    stored: Message = {"role": role, "content": data.pop("content", None)}
    calls = data.get("tool_calls") or []
    if calls:
        stored["tool_calls"] = [_openai_call(c) for c in calls]
        if _rebuildable(calls):
            del data["tool_calls"]
    elif "tool_calls" in data:
        del data["tool_calls"]  # an empty list: rebuilt as one
    if isinstance(data.get("tool_call_id"), str):
        stored["tool_call_id"] = data.pop("tool_call_id")
    stored["langchain"] = data
    return stored


def from_message(stored: Mapping[str, Any]) -> BaseMessage:
    """The LangChain message a statemw message holds (or the class matching its role)."""
    content = stored.get("content")
    if stored.get("summary") is True:
        return SystemMessage(content=SUMMARY_PREFIX + str(content))
    data = stored.get("langchain")
    if isinstance(data, Mapping):
        data = dict(data)
        data["content"] = content
        kind = data.get("type")
        if kind in ("ai", "AIMessageChunk") and "tool_calls" not in data:
            data["tool_calls"] = [_lc_call(c) for c in stored.get("tool_calls") or []]
        if "tool_call_id" in stored:
            data["tool_call_id"] = stored["tool_call_id"]
        return messages_from_dict([{"type": kind, "data": data}])[0]
    return _plain(stored)


def _plain(stored: Mapping[str, Any]) -> BaseMessage:
    """A message statemw stored for the app itself, as the LangChain class of its role."""
    role = str(stored.get("role"))
    content = stored.get("content")
    text: Any = content
    if content is None:  # an OpenAI assistant turn that only calls tools
        text = ""
    elif not isinstance(content, str | list):
        text = json.dumps(content, default=str)
    if role in ("user", "human"):
        return HumanMessage(content=text)
    if role in ("assistant", "ai", "agent", "bot"):
        calls = [_lc_call(c) for c in stored.get("tool_calls") or []]
        return AIMessage(content=text, tool_calls=calls)
    if role == "system":
        return SystemMessage(content=text)
    if role == "tool":
        return ToolMessage(content=text, tool_call_id=str(stored.get("tool_call_id")))
    return ChatMessage(role=role, content=text)


class StatemwChatMessageHistory(BaseChatMessageHistory):
    """LangChain's `BaseChatMessageHistory` over the statemw session `session_id`.

    store: where it lives (None: the configured default store). user_id: the statemw user a new
    session belongs to. last / max_tokens: `messages` is then statemw's window (the last N
    messages, or the newest that fit; a tool call always with its results, the system prompt
    kept, a compaction's summary first), not the whole log.

    Every read loads the session and every write saves only what it appended, so two chains on
    one session lose nothing; the async methods use statemw's async store, not an executor.
    `from_session` binds to a session you already hold (the web request's).
    """

    def __init__(
        self,
        session_id: str,
        *,
        store: Store | None = None,
        user_id: str | None = None,
        last: int | None = None,
        max_tokens: int | None = None,
    ) -> None:
        self.session_id = session_id
        self.user_id = user_id
        self.last = last
        self.max_tokens = max_tokens
        self._store = store
        self._bound: Session | None = None

    @classmethod
    def from_session(cls, session: Mapping[str, Any], **options: Any) -> StatemwChatMessageHistory:
        """The history of `session` itself (e.g. `request.session`): messages join its log and
        are saved with it, by the web middleware or your `save()`."""
        session = statemw_session(session)
        history = cls(session.id, store=session.store, user_id=session.user_id, **options)
        history._bound = session
        return history

    @property
    def store(self) -> Store:
        return self._store if self._store is not None else default_store()

    def __repr__(self) -> str:
        return f"<StatemwChatMessageHistory {self.session_id!r}>"

    def _whole(self, session: Session) -> bool:
        """No window asked and nothing compacted: the log as stored (orphans too), not a window."""
        return self.last is None and self.max_tokens is None and session.summary is None

    # -- sync ----------------------------------------------------------------------------------

    def _load(self) -> Session | None:
        return self._bound if self._bound is not None else self.store.get(self.session_id)

    def _open(self) -> Session:
        session = self._load()
        if session is None:
            session = self.store.create(self.user_id, session_id=self.session_id)
        return session

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """The stored messages (or the window, with last / max_tokens), oldest first."""
        session = self._load()
        if session is None:
            return []
        if self._whole(session):
            return [from_message(m) for m in session.messages]
        history = session.get_history(last=self.last, max_tokens=self.max_tokens, format="raw")
        return [from_message(m) for m in history]

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        stored = [to_message(m) for m in messages]
        if not stored:
            return
        session = self._open()
        for message in stored:
            session.add_message(message)
        if self._bound is None:
            try:
                session.save()
            except SessionNotFound:  # cleared or expired since loaded: start it again
                session = self.store.create(self.user_id, session_id=self.session_id)
                for message in stored:
                    session.add_message(message)
                session.save()

    def clear(self) -> None:
        """Remove every message (the statemw session's state stays)."""
        session = self._load()
        if session is None or (len(session.messages) == 0 and session.summary is None):
            return
        session.messages = []
        if self._bound is None:
            with contextlib.suppress(SessionNotFound):  # deleted meanwhile: empty already
                session.save()

    # -- async ---------------------------------------------------------------------------------

    async def _aopen(self) -> Session | None:
        if self._bound is not None:
            return self._bound
        return await self.store.aget(self.session_id)

    async def aget_messages(self) -> list[BaseMessage]:
        session = await self._aopen()
        if session is None:
            return []
        if self._whole(session):
            return [from_message(m) for m in await session.fetch_messages()]
        history = await session.aget_history(
            last=self.last, max_tokens=self.max_tokens, format="raw"
        )
        return [from_message(m) for m in history]

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        stored = [to_message(m) for m in messages]
        if not stored:
            return
        session = await self._aopen()
        if session is None:
            session = await self.store.acreate(self.user_id, session_id=self.session_id)
        for message in stored:
            session.add_message(message)
        if self._bound is None:
            try:
                await session.asave()
            except SessionNotFound:
                session = await self.store.acreate(self.user_id, session_id=self.session_id)
                for message in stored:
                    session.add_message(message)
                await session.asave()

    async def aclear(self) -> None:
        session = await self._aopen()
        if session is None or (len(session.messages) == 0 and session.summary is None):
            return
        session.messages = []
        if self._bound is None:
            with contextlib.suppress(SessionNotFound):
                await session.asave()
