"""@stateful: a session for one handler or one plain function, no middleware needed.

    @stateful(store, key=UserID(lambda request: request.user.id))
    def handle(request, session): ...            # a Starlette endpoint or a Flask view

    @stateful(store)
    def turn(text: str, session: Session) -> str: ...
    turn("hi", session_id="slack-C042")          # a named server-side session, made on first use

The session is loaded before the call and saved after it (only if modified). On a web handler the
keys find the id and the response carries it back, as with the middleware; a streamed response
(Starlette's StreamingResponse, a Flask generator) is saved again when its body ends. A generator
function is saved when it is used up or closed.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterable, AsyncIterator, Callable, Generator, Sequence
from typing import Any, TypeVar, cast

from statemw._flow import Binding, Reply, RequestFlow, Requests
from statemw.errors import InvalidValue
from statemw.ids import check_session_id
from statemw.keys import IdSource, Incoming, SigningSecret
from statemw.store import Store

R = TypeVar("R")


def _starlette_connection(args: tuple[Any, ...]) -> Any:
    try:
        from starlette.requests import HTTPConnection
    except ImportError:  # pragma: no cover - starlette not installed
        return None
    return next((a for a in args if isinstance(a, HTTPConnection)), None)


def _incoming(args: tuple[Any, ...]) -> Incoming | None:
    """The web request this call serves (a Starlette argument, or Flask's request context)."""
    connection = _starlette_connection(args)
    if connection is not None:
        from statemw.asgi import _incoming as from_scope

        return from_scope(connection.scope)
    try:
        import flask
    except ImportError:  # pragma: no cover - flask not installed
        return None
    if flask.has_request_context():
        from statemw.wsgi import incoming_from_environ

        return incoming_from_environ(flask.request.environ, flask.request)
    return None


class _Call:
    """One decorated function's session handling: find the session, then answer with it."""

    def __init__(self, requests: Requests, fn: Callable[..., Any], param: str, keyed: bool) -> None:
        self.requests = requests
        self.fn = fn
        self.param = param
        self.keyed = keyed

    def handed_in(self, kwargs: dict[str, Any]) -> Binding | None:
        """The caller passed session=...: use it as it is."""
        session = kwargs.get(self.param)
        return None if session is None else Binding(session, None, None, session.id)

    def open(self, args: tuple[Any, ...], kwargs: dict[str, Any], sid: str | None) -> Binding:
        binding = self.handed_in(kwargs)
        return self.requests.run(self.open_flow(args, sid)) if binding is None else binding

    async def aopen(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], sid: str | None
    ) -> Binding:
        binding = self.handed_in(kwargs)
        return await self.requests.arun(self.open_flow(args, sid)) if binding is None else binding

    def open_flow(self, args: tuple[Any, ...], session_id: str | None) -> RequestFlow[Binding]:
        """A session the caller names (made on first use), else the one the request's keys find."""
        if session_id is not None:
            session = yield from self.requests.named_flow(check_session_id(session_id))
            return Binding(session, None, None, None if session.is_new else session.id)
        incoming = _incoming(args) if self.keyed else None
        if incoming is None:
            raise InvalidValue(
                f"{self.fn.__qualname__}: name the session (session_id=...), pass session=..., "
                "or decorate a web handler with key=..."
            )
        return (yield from self.requests.open_flow(incoming))

    def answer_flow(self, result: Any, binding: Binding) -> RequestFlow[Any]:
        """Save, then give a web response the headers that carry the id (and a save at its end
        when its body is streamed)."""
        response = _as_response(result, binding)
        streamed = _streamed(response, binding)
        reply = yield from self.requests.close_flow(binding, streaming=streamed)
        if binding.incoming is None:
            return response
        return _attach(response, reply, self.requests, binding, streamed)


def _as_response(result: Any, binding: Binding) -> Any:
    """A Flask view's return value as a Response, so headers can be added; others unchanged."""
    if binding.incoming is None or _starlette_connection((binding.incoming.request,)) is not None:
        return result
    import flask

    return flask.make_response(result)


def _streamed(response: Any, binding: Binding) -> bool:
    """Is the body still to come (Starlette's StreamingResponse, werkzeug's is_streamed)?"""
    if binding.incoming is None:
        return False
    if _starlette_connection((binding.incoming.request,)) is not None:
        from starlette.responses import StreamingResponse

        return isinstance(response, StreamingResponse)
    return bool(response.is_streamed)


def _attach(
    response: Any,
    reply: Reply,
    requests: Requests,
    binding: Binding,
    streamed: bool,
) -> Any:
    if _starlette_connection((binding.incoming.request if binding.incoming else None,)):
        from statemw.asgi import add_reply

        add_reply(response.headers, reply)
        if streamed:
            response.body_iterator = _saved_after(response.body_iterator, requests, binding)
        return response
    from statemw.flask import add_reply as add_flask_reply
    from statemw.wsgi import SavedAtEnd

    add_flask_reply(response, reply)
    if streamed:
        response.response = SavedAtEnd(response.response, lambda: requests.finish(binding))
    return response


async def _saved_after(
    body: AsyncIterable[Any], requests: Requests, binding: Binding
) -> AsyncIterator[Any]:
    """A Starlette body that saves when it ends, is cancelled (a disconnect) or raises."""
    import anyio

    try:
        async for chunk in body:
            yield chunk
    finally:
        with anyio.CancelScope(shield=True):
            await requests.afinish(binding)


def stateful(
    store: Store | None = None,
    *,
    key: IdSource | Sequence[IdSource] | None = None,
    secret_key: SigningSecret | None = None,
    param: str = "session",
) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Give the decorated function a `session` argument, loaded before and saved after it.

    Callers pass `session_id=` to name a server-side session (created on first use) or
    `session=` to hand one in; on a Starlette endpoint or Flask view decorated with `key=`, the
    request's keys find the session and the response carries its id back. The result keeps the
    function's return type; its parameters become `(*args, session_id=None, **kwargs)`.
    """
    keys: list[IdSource] = [] if key is None else [key] if not isinstance(key, Sequence) else [*key]
    requests = Requests(store, keys, secret_key=secret_key, require_keys=False)

    def decorate(fn: Callable[..., R]) -> Callable[..., R]:
        if param not in inspect.signature(fn).parameters:
            raise TypeError(f"@stateful: {fn.__qualname__} has no parameter {param!r}")
        call = _Call(requests, fn, param, bool(keys))

        if inspect.isasyncgenfunction(fn):

            @functools.wraps(fn)
            async def async_generator_wrapper(
                *args: Any, session_id: str | None = None, **kwargs: Any
            ) -> AsyncIterator[Any]:
                binding = await call.aopen(args, kwargs, session_id)
                kwargs[param] = binding.session
                try:
                    async for item in fn(*args, **kwargs):
                        yield item
                finally:
                    await requests.arun(requests.close_flow(binding))

            return cast(Callable[..., R], async_generator_wrapper)

        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def generator_wrapper(
                *args: Any, session_id: str | None = None, **kwargs: Any
            ) -> Generator[Any, Any, Any]:
                binding = call.open(args, kwargs, session_id)
                kwargs[param] = binding.session
                try:
                    return (yield from fn(*args, **kwargs))
                finally:
                    requests.run(requests.close_flow(binding))

            return cast(Callable[..., R], generator_wrapper)

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(
                *args: Any, session_id: str | None = None, **kwargs: Any
            ) -> Any:
                binding = await call.aopen(args, kwargs, session_id)
                kwargs[param] = binding.session
                result = await fn(*args, **kwargs)
                return await requests.arun(call.answer_flow(result, binding))

            return cast(Callable[..., R], async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, session_id: str | None = None, **kwargs: Any) -> R:
            binding = call.open(args, kwargs, session_id)
            kwargs[param] = binding.session
            result = fn(*args, **kwargs)
            return cast(R, requests.run(call.answer_flow(result, binding)))

        return wrapper

    return decorate
