"""The web bridge: a framework's session for the request's statemw session, in a Starlette app.

Each route runs a framework's own runner on `request.session` (keyed by the logged-in user), so
the conversation continues on the user's other device and `store.forget_user` erases it.
"""

from __future__ import annotations

from typing import Any

import pytest
from agents import Runner as AgentsRunner
from google.adk.runners import Runner as AdkRunner
from langchain_core.messages import HumanMessage
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from examples import agents_adk, agents_langchain, agents_openai
from statemw import Session, Store
from statemw.asgi import StateMiddleware
from statemw.integrations.adk import StatemwSessionService
from statemw.integrations.langchain import StatemwChatMessageHistory
from statemw.integrations.openai_agents import StatemwSession
from statemw.keys import Cookie, UserID


def current(request: Request) -> Session:
    """The request's statemw Session (Starlette types `request.session` as a dict)."""
    assert isinstance(request.session, Session)
    return request.session


def make_app(store: Store) -> Starlette:
    openai_agent = agents_openai.make_agent(agents_openai.ScriptedModel())
    adk_agent = agents_adk.make_agent(agents_adk.ScriptedLlm())
    chat_model = agents_langchain.ScriptedChatModel()

    async def openai_chat(request: Request) -> JSONResponse:
        session = StatemwSession.from_session(request.session)
        text = (await request.json())["text"]
        result = await AgentsRunner.run(openai_agent, text, session=session)
        return JSONResponse(
            {"reply": result.final_output, "messages": len(current(request).messages)}
        )

    async def langchain_chat(request: Request) -> JSONResponse:
        history = StatemwChatMessageHistory.from_session(request.session)
        chain = agents_langchain.make_chain(chat_model, lambda _: history)
        text = (await request.json())["text"]
        config: Any = {"configurable": {"session_id": current(request).id}}
        reply = await chain.ainvoke([HumanMessage(text)], config)
        return JSONResponse({"reply": reply[-1].text, "messages": len(current(request).messages)})

    async def adk_chat(request: Request) -> JSONResponse:
        service = StatemwSessionService.from_session(request.session, app_name=agents_adk.APP)
        runner = AdkRunner(agent=adk_agent, app_name=agents_adk.APP, session_service=service)
        text = (await request.json())["text"]
        reply = await agents_adk.ask(runner, service.user_id, current(request).id, text)
        return JSONResponse({"reply": reply, "messages": len(current(request).messages)})

    return Starlette(
        routes=[
            Route("/openai", openai_chat, methods=["POST"]),
            Route("/langchain", langchain_chat, methods=["POST"]),
            Route("/adk", adk_chat, methods=["POST"]),
        ],
        middleware=[
            Middleware(
                StateMiddleware,
                store=store,
                keys=[UserID(lambda r: r.headers.get("x-user")), Cookie(secret_key="s3cret")],
            )
        ],
    )


@pytest.mark.parametrize("route", ["/openai", "/langchain", "/adk"])
def test_a_users_other_device_continues_the_agents_conversation_until_forgotten(
    store: Store, route: str
) -> None:
    app = make_app(store)
    phone, laptop = TestClient(app), TestClient(app)
    me = {"x-user": "harsh"}
    first = phone.post(route, json={"text": "Weather in Berlin?"}, headers=me).json()
    assert first["reply"] == "The weather: rain, 12 C."
    again = laptop.post(route, json={"text": "And now?"}, headers=me).json()
    assert again["reply"] == "The weather: rain, 12 C."  # the city came from the phone's turn
    assert again["messages"] == 2 * first["messages"]
    sid = store.current_session_id("harsh")
    assert sid is not None
    assert len(store.load(sid).messages) == again["messages"]

    store.forget_user("harsh")
    fresh = laptop.post(route, json={"text": "And now?"}, headers=me).json()
    assert fresh["reply"] == "The weather: unknown."  # nothing of the conversation is left
    assert fresh["messages"] == first["messages"]
