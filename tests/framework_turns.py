"""One framework turn, run by a process of its own: the agent frameworks across a real restart.

`in_child(turn, url, session_id, text)` runs one of the `*_turn` functions below in a new
process and returns what it saw: the session as the framework read it before the turn, as it
reads it after, and what the scripted model was sent. Each call is a fresh process, which opens
its own Store on `url` (a diskcache directory, a PostgreSQL schema): nothing but the store carries
the conversation from one call to the next.

The processes come from a forkserver that imported the three frameworks once (they take seconds
to import); the server was started as a new interpreter and never opened a store, so each child
starts from nothing the test process holds.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from langchain_core.messages import messages_to_dict

PRELOAD = [
    "examples.agents_openai",
    "examples.agents_langchain",
    "examples.agents_adk",
    "tests.framework_turns",
]

Seen = dict[str, Any]
"""before / after: the session's items (as JSON) read through the framework's adapter;
model_input: what the scripted model was sent on its first call of the turn; reply: the
turn's final text."""


def in_child(turn: Callable[[str, str, str], Seen], url: str, session_id: str, text: str) -> Seen:
    """`turn(url, session_id, text)` in a process of its own."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(turn, url, session_id, text).result(timeout=120)


def openai_agents_turn(url: str, session_id: str, text: str) -> Seen:
    from agents import Runner

    from examples.agents_openai import ScriptedModel, make_agent
    from statemw import Store
    from statemw.integrations.openai_agents import StatemwSession

    async def turn() -> Seen:
        store = Store(url)
        try:
            model = ScriptedModel()
            session = StatemwSession(session_id, store=store, user_id="harsh")
            before = await session.get_items()
            result = await Runner.run(make_agent(model), text, session=session)
            after = await StatemwSession(session_id, store=store).get_items()
            return {
                "before": before,
                "after": after,
                "model_input": model.inputs[0],
                "reply": result.final_output,
            }
        finally:
            await store.aclose()
            store.close()

    return asyncio.run(turn())


def langchain_turn(url: str, session_id: str, text: str) -> Seen:
    from langchain_core.messages import BaseMessage, HumanMessage

    from examples.agents_langchain import ScriptedChatModel, make_chain
    from statemw import Store
    from statemw.integrations.langchain import StatemwChatMessageHistory

    sent: list[list[BaseMessage]] = []

    class Recording(ScriptedChatModel):
        def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
            sent.append(list(messages))
            return super()._generate(messages, *args, **kwargs)

    async def turn() -> Seen:
        store = Store(url)
        try:
            chain = make_chain(Recording(), lambda sid: StatemwChatMessageHistory(sid, store=store))
            before = await StatemwChatMessageHistory(session_id, store=store).aget_messages()
            config: Any = {"configurable": {"session_id": session_id}}
            reply = await chain.ainvoke([HumanMessage(text)], config)
            after = await StatemwChatMessageHistory(session_id, store=store).aget_messages()
            return {
                "before": messages_to_dict(before),
                "after": messages_to_dict(after),
                "model_input": messages_to_dict(sent[0]),
                "reply": reply[-1].text,
            }
        finally:
            await store.aclose()
            store.close()

    return asyncio.run(turn())


def adk_turn(url: str, session_id: str, text: str) -> Seen:
    from google.adk.models.llm_request import LlmRequest
    from google.adk.runners import Runner

    from examples.agents_adk import APP, ScriptedLlm, ask, make_agent
    from statemw import Store
    from statemw.integrations.adk import StatemwSessionService

    sent: list[LlmRequest] = []

    class Recording(ScriptedLlm):
        async def generate_content_async(
            self, llm_request: LlmRequest, stream: bool = False
        ) -> Any:
            sent.append(llm_request.model_copy(deep=True))
            async for response in super().generate_content_async(llm_request, stream):
                yield response

    async def turn() -> Seen:
        store = Store(url)
        try:
            service = StatemwSessionService(store=store)
            found = await service.get_session(app_name=APP, user_id="harsh", session_id=session_id)
            if found is None:
                found = await service.create_session(
                    app_name=APP, user_id="harsh", session_id=session_id
                )
            before = [e.model_dump(mode="json") for e in found.events]
            runner = Runner(agent=make_agent(Recording()), app_name=APP, session_service=service)
            reply = await ask(runner, "harsh", session_id, text)
            again = await service.get_session(app_name=APP, user_id="harsh", session_id=session_id)
            assert again is not None
            return {
                "before": before,
                "after": [e.model_dump(mode="json") for e in again.events],
                "model_input": [c.model_dump(mode="json") for c in sent[0].contents],
                "reply": reply,
                "state": dict(again.state),
            }
        finally:
            await store.aclose()
            store.close()

    return asyncio.run(turn())
