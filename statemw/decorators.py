"""@stateful: a session for one handler or one plain function, no middleware needed.

    @stateful(store, key=UserID(lambda request: request.user.id))
    def handle(request, session): ...            # a Starlette endpoint or a Flask view

    @stateful(store)
    def turn(text: str, session: Session) -> str: ...
    turn("hi", session_id="slack-C042")          # a named server-side session, made on first use

The session is loaded before the call and saved after it (only if modified). On a web handler the
keys find the id and the response carries it back, as with the middleware.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from statemw._adapter import Binding, Flow, Manager
from statemw.errors import InvalidValue
from statemw.ids import check_session_id
from statemw.keys import Incoming, Key, SecretKey
from statemw.session import Session
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


def _with_headers(result: Any, headers: list[tuple[str, str]], opened: Any) -> Any:
    """Attach the session's headers to the handler's response (Starlette or Flask)."""
    if not headers or not isinstance(opened, Binding):
        return result
    if _starlette_connection((opened.incoming.request,)) is not None:
        for name, value in headers:
            result.headers.append(name, value)
        return result
    import flask

    response = flask.make_response(result)
    for name, value in headers:
        response.headers.add(name, value)
    return response


def stateful(
    store: Store | None = None,
    *,
    key: Key | Sequence[Key] | None = None,
    secret_key: SecretKey | None = None,
    param: str = "session",
) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Give the decorated function a `session` argument, loaded before and saved after it.

    Callers pass `session_id=` to name a server-side session (created on first use) or
    `session=` to hand one in; on a Starlette endpoint or Flask view decorated with `key=`, the
    request's keys find the session and the response carries its id back. The result keeps the
    function's return type; its parameters become `(*args, session_id=None, **kwargs)`.
    """
    keys: list[Key] = [] if key is None else [key] if not isinstance(key, Sequence) else [*key]
    manager = Manager(store, keys, secret_key=secret_key, require_keys=False)

    def decorate(fn: Callable[..., R]) -> Callable[..., R]:
        if param not in inspect.signature(fn).parameters:
            raise TypeError(f"@stateful: {fn.__qualname__} has no parameter {param!r}")

        def open_flow(
            args: tuple[Any, ...], kwargs: dict[str, Any], session_id: str | None
        ) -> Flow[Any]:
            if param in kwargs:
                return kwargs[param]
            if session_id is not None:
                return (yield from manager.named_flow(check_session_id(session_id)))
            incoming = _incoming(args) if keys else None
            if incoming is None:
                raise InvalidValue(
                    f"{fn.__qualname__}: name the session (session_id=...), pass session=..., "
                    "or decorate a web handler with key=..."
                )
            return (yield from manager.open_flow(incoming))

        def close_flow(opened: Any) -> Flow[list[tuple[str, str]]]:
            if isinstance(opened, Binding):
                return (yield from manager.close_flow(opened))
            return (yield from manager.save_flow(opened))

        def session_of(opened: Any) -> Session:
            return opened.session if isinstance(opened, Binding) else cast(Session, opened)

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(
                *args: Any, session_id: str | None = None, **kwargs: Any
            ) -> Any:
                opened = await manager.arun(open_flow(args, kwargs, session_id))
                kwargs[param] = session_of(opened)
                result = await fn(*args, **kwargs)
                return _with_headers(result, await manager.arun(close_flow(opened)), opened)

            return cast(Callable[..., R], async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, session_id: str | None = None, **kwargs: Any) -> R:
            opened = manager.run(open_flow(args, kwargs, session_id))
            kwargs[param] = session_of(opened)
            result = fn(*args, **kwargs)
            return _with_headers(result, manager.run(close_flow(opened)), opened)  # type: ignore[no-any-return]

        return wrapper

    return decorate
