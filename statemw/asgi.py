"""Pure ASGI middleware: `request.session` is a statemw Session (Starlette, FastAPI, any ASGI app).

Accepts Starlette's SessionMiddleware keywords, so swapping the import moves an app from cookie
sessions to server-side ones:

    from statemw.asgi import StateMiddleware
    app.add_middleware(StateMiddleware, secret_key=KEY)

A request that carries no session id does no store I/O. With an id the session is loaded before
the handler; on `lazy_paths` it is loaded only by `await get_session(request)` (or FastAPI's
SessionDep). It is saved when the response starts (so a new session's cookie goes out with the
headers) and again when the body ends, each time only if modified: what a streamed body's code
adds (the model's answer) is kept, also when the client disconnects or the stream raises.
WebSocket sessions are saved after each message the app sends. When the store is down the
client gets a 503 (with Retry-After) instead of the response; `unavailable_status=None` lets
StoreUnavailable propagate instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Literal

import anyio
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from statemw._flow import Binding, Reply, Requests
from statemw.errors import StateError, StoreUnavailable
from statemw.keys import Cookie, IdSource, Incoming, SigningSecret
from statemw.session import Session
from statemw.store import Store

SCOPE_KEY = "statemw"


class _RequestSession:
    """Per-request state: loads at most once, remembers the binding for the save.

    It lives in the scope, and its binding reaches the scope again (the request's headers):
    `release` breaks that loop when the request is done, so the request's objects are freed
    then and not left for the garbage collector."""

    def __init__(self, requests: Requests) -> None:
        self.requests = requests
        self.binding: Binding | None = None

    async def load(self, scope: Scope) -> Session:
        if self.binding is None:
            self.binding = await self.requests.aopen(_incoming(scope))
            scope["session"] = self.binding.session
        return self.binding.session

    def release(self) -> None:
        self.binding = None

    async def save(self, *, streaming: bool = False) -> Reply:
        binding, self.binding = self.binding, None  # one attempt; a failed save is not retried
        if binding is None:
            return Reply()
        reply = await self.requests.aclose(binding, streaming=streaming)
        self.binding = binding
        return reply

    async def finish(self) -> None:
        """Save what changed after the response started; shielded, so a disconnect that
        cancels the stream does not cancel the save of what it produced."""
        if self.binding is not None and self.binding.session.unsaved:
            with anyio.CancelScope(shield=True):
                if not await self.requests.afinish(self.binding):
                    self.binding = None  # logged; not retried


def _incoming(scope: Scope) -> Incoming:
    cookie = ""
    for name, value in scope["headers"]:
        if name == b"cookie":  # ASGI header names are lower-case
            cookie = (
                value.decode("latin-1") if not cookie else cookie + "; " + value.decode("latin-1")
            )
    return Incoming(
        cookie_header=cookie,
        header=lambda wanted: _header(scope, wanted),
        https=scope.get("scheme") in ("https", "wss"),
        request=lambda: HTTPConnection(scope),
    )


def _header(scope: Scope, name: str) -> str | None:
    wanted = name.encode("latin-1")
    for key, value in scope["headers"]:
        if key == wanted:
            return str(value.decode("latin-1"))
    return None


class StateMiddleware:
    """Server-side sessions for an ASGI app (HTTP and WebSocket)."""

    def __init__(
        self,
        app: ASGIApp,
        store: Store | None = None,
        keys: Sequence[IdSource] | None = None,
        *,
        secret_key: SigningSecret | None = None,
        session_cookie: str = "session",
        max_age: int | timedelta | None = 14 * 24 * 60 * 60,
        path: str = "/",
        same_site: Literal["lax", "strict", "none"] = "lax",
        https_only: bool | None = None,
        domain: str | None = None,
        partitioned: bool = False,
        lazy_paths: Sequence[str] = (),
        unavailable_status: int | None = 503,
    ) -> None:
        if keys is None:
            keys = [
                Cookie(
                    secret_key,
                    name=session_cookie,
                    max_age=max_age,
                    path=path,
                    same_site=same_site,
                    https_only=https_only,
                    domain=domain,
                    partitioned=partitioned,
                )
            ]
        self.app = app
        self.requests = Requests(store, keys, secret_key=secret_key)
        self.lazy_paths = tuple(lazy_paths)
        self.unavailable_status = unavailable_status

    async def _unavailable(self, send: Send, exc: StoreUnavailable) -> None:
        if self.unavailable_status is None:
            raise exc
        body = b'{"error": "session store unavailable"}'
        await send(
            {
                "type": "http.response.start",
                "status": self.unavailable_status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", b"1"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        state = _RequestSession(self.requests)
        scope[SCOPE_KEY] = state
        http = scope["type"] == "http"
        if not (self.lazy_paths and scope["path"].startswith(self.lazy_paths)):
            try:
                await state.load(scope)
            except StoreUnavailable as exc:
                if not http:
                    raise
                await self._unavailable(send, exc)
                return

        if http:
            replaced = False
            started = False

            async def send_http(message: Message) -> None:
                nonlocal replaced, started
                if replaced:  # the 503 went out instead of the app's response
                    return
                if message["type"] == "http.response.start":
                    headers = MutableHeaders(scope=message)
                    try:
                        reply = await state.save(streaming="content-length" not in headers)
                    except StoreUnavailable as exc:
                        replaced = True
                        await self._unavailable(send, exc)
                        return
                    add_reply(headers, reply)
                    started = True
                elif message["type"] == "http.response.body" and not message.get("more_body"):
                    await state.finish()  # before the client sees the end: its next turn follows
                await send(message)

            try:
                await self.app(scope, receive, send_http)
            finally:
                if started:  # a disconnect or an error mid-stream: keep what was added
                    await state.finish()
                state.release()
            return

        async def send_websocket(message: Message) -> None:
            if message["type"] == "websocket.accept":
                reply = await state.save()
                extra = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in reply.headers]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            elif message["type"] in ("websocket.send", "websocket.close"):
                await state.save()
            await send(message)

        try:
            await self.app(scope, receive, send_websocket)
        finally:
            try:
                await state.save()
            finally:
                state.release()


def add_reply(headers: MutableHeaders, reply: Reply) -> None:
    """Put a session's reply on a response's headers: Vary merged, the id's headers added."""
    if reply.vary and "vary" not in headers:  # appended as is: a merge rewrites the list
        headers.append("Vary", ", ".join(dict.fromkeys(reply.vary)))
    else:
        for name in reply.vary:
            headers.add_vary_header(name)
    for name, value in reply.headers:
        headers.append(name, value)


async def get_session(connection: HTTPConnection) -> Session:
    """The request's session, loading it now on lazy routes (no I/O when already loaded)."""
    state = connection.scope.get(SCOPE_KEY)
    if not isinstance(state, _RequestSession):
        raise StateError("statemw.asgi.StateMiddleware is not installed on this app")
    session = await state.load(connection.scope)
    session.mark_accessed()  # as Starlette's request.session does
    return session
