"""WSGI middleware for any WSGI app: the session is `environ["statemw.session"]`.

A request that carries no session id does no store I/O. The session is saved when the app calls
start_response (before the body is sent), only if modified. When the store is down the client
gets a 503 with Retry-After instead (`unavailable_status=None` lets StoreUnavailable propagate).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from statemw._adapter import Manager, parse_cookies
from statemw.errors import StoreUnavailable
from statemw.keys import Incoming, Key, SecretKey
from statemw.store import Store

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

ENVIRON_KEY = "statemw.session"


def incoming_from_environ(environ: WSGIEnvironment, request: Any = None) -> Incoming:
    headers = {
        name[5:].replace("_", "-").lower(): str(value)
        for name, value in environ.items()
        if name.startswith("HTTP_")
    }
    return Incoming(
        cookies=parse_cookies(environ.get("HTTP_COOKIE", "")),
        headers=headers,
        https=environ.get("wsgi.url_scheme") == "https",
        request=environ if request is None else request,
    )


class StateMiddleware:
    """Server-side sessions for a WSGI app; UserID resolvers receive the WSGI environ."""

    def __init__(
        self,
        app: WSGIApplication,
        store: Store | None = None,
        keys: Sequence[Key] | None = None,
        *,
        secret_key: SecretKey | None = None,
        unavailable_status: int | None = 503,
    ) -> None:
        self.app = app
        self.manager = Manager(store, keys, secret_key=secret_key)
        self.unavailable_status = unavailable_status

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            binding = self.manager.open(incoming_from_environ(environ))
            environ[ENVIRON_KEY] = binding.session

            def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                if exc_info is None:
                    headers = [*headers, *self.manager.close(binding)]
                return start_response(status, headers, exc_info)

            return self.app(environ, start)
        except StoreUnavailable:
            if self.unavailable_status is None:
                raise
            body = b'{"error": "session store unavailable"}'
            start_response(
                f"{self.unavailable_status} Service Unavailable",
                [
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(body))),
                    ("Retry-After", "1"),
                ],
            )
            return [body]
