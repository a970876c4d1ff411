"""The demo chat app on Starlette: `python -m examples.starlette_app` (or `make demo`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from examples import api
from statemw import InvalidValue, Session, Store
from statemw.asgi import StateMiddleware
from statemw.keys import Cookie, UserID

FEED_SECONDS = 600  # an event stream ends after this long; the browser reconnects by itself
HEARTBEAT = 5.0
STREAM_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def create_app(store: Store | None = None, secret: str | None = None) -> Starlette:
    store = store or api.demo_store()
    secret = secret or api.demo_secret()
    login = api.Login(secret)

    def session_of(request: Request) -> Session:
        session: Session = request.session  # type: ignore[assignment]
        return session

    async def index(request: Request) -> FileResponse:
        return FileResponse(api.STATIC / "index.html")

    async def get_state(request: Request) -> JSONResponse:
        return JSONResponse(api.state(session_of(request)))

    async def post_chat(request: Request) -> JSONResponse:
        body = await request.json()
        return JSONResponse(api.chat(session_of(request), body.get("text")))

    async def post_chat_stream(request: Request) -> StreamingResponse:
        body = await request.json()
        pieces = api.chat_stream(session_of(request), body.get("text"))

        async def paced() -> AsyncIterator[str]:
            try:
                for piece in pieces:
                    yield piece
                    await asyncio.sleep(api.token_delay())
            finally:
                pieces.close()  # a client that left: the answer so far is logged

        return StreamingResponse(
            paced(), media_type="text/plain; charset=utf-8", headers=STREAM_HEADERS
        )

    async def put_item(request: Request) -> JSONResponse:
        body = await request.json()
        params = request.path_params
        return JSONResponse(
            api.edit(session_of(request), params["scope"], params["key"], body.get("value"))
        )

    async def delete_item(request: Request) -> JSONResponse:
        params = request.path_params
        return JSONResponse(api.forget_item(session_of(request), params["scope"], params["key"]))

    async def post_login(request: Request) -> JSONResponse:
        user = api.check_user_name((await request.json()).get("user"))
        current = await store.acurrent_session_id(user)
        session = (await store.aget(current) if current else None) or await store.acreate(user)
        response = JSONResponse(api.state(session))
        response.set_cookie(
            api.LOGIN_COOKIE, login.cookie_value(user), httponly=True, samesite="lax"
        )
        return response

    async def post_logout(request: Request) -> JSONResponse:
        response = JSONResponse(api.state(store.create()))
        response.delete_cookie(api.LOGIN_COOKIE)
        response.delete_cookie("session")  # the cookie pointed at the user's conversation
        return response

    async def post_forget(request: Request) -> JSONResponse:
        session = session_of(request)
        api.forget_me(session)
        return JSONResponse(api.state(session))

    async def events(request: Request) -> StreamingResponse:
        session = session_of(request)

        async def feed() -> AsyncIterator[str]:
            """Push an event per committed change; every few quiet seconds, check whether the
            device should follow another conversation now (after a login or a forget)."""
            loop = asyncio.get_running_loop()
            deadline = loop.time() + FEED_SECONDS
            following = await api.afollowed(store, session)
            while loop.time() < deadline:
                if following is None:
                    await asyncio.sleep(HEARTBEAT)  # no conversation yet: nothing to listen to
                else:
                    async with store.asubscribe(following, timeout=HEARTBEAT) as changes:
                        async for change in changes:
                            yield f"data: {change.revision}\n\n"
                now = await api.afollowed(store, session)
                if now != following:
                    following = now
                    yield "data: switched\n\n"

        return StreamingResponse(
            feed(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )

    async def bad_input(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=400)

    def current_user(request: Any) -> str | None:
        return login.user(request.cookies.get(api.LOGIN_COOKIE))

    return Starlette(
        routes=[
            Route("/", index),
            Route("/api/state", get_state),
            Route("/api/chat", post_chat, methods=["POST"]),
            Route("/api/chat/stream", post_chat_stream, methods=["POST"]),
            Route("/api/state/{scope}/{key}", put_item, methods=["PUT"]),
            Route("/api/state/{scope}/{key}", delete_item, methods=["DELETE"]),
            Route("/api/login", post_login, methods=["POST"]),
            Route("/api/logout", post_logout, methods=["POST"]),
            Route("/api/forget", post_forget, methods=["POST"]),
            Route("/api/events", events),
            Mount("/static", StaticFiles(directory=api.STATIC), name="static"),
        ],
        middleware=[
            Middleware(
                StateMiddleware,
                store=store,
                keys=[UserID(current_user), Cookie(secret_key=secret)],
                lazy_paths=["/static"],
            )
        ],
        exception_handlers={InvalidValue: bad_input},
    )
