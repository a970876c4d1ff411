"""WSGI middleware for any WSGI app: the session is `environ["statemw.session"]`.

A request that carries no session id does no store I/O. The session is saved when the app calls
start_response (before the body is sent) and again when the body ends (a streamed body's last
chunk, or the server's close() after a disconnect or an error), each time only if modified. When
the store is down the client gets a 503 with Retry-After instead (`unavailable_status=None` lets
StoreUnavailable propagate).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from statemw._flow import Reply, Requests
from statemw.errors import StoreUnavailable
from statemw.keys import IdSource, Incoming, SigningSecret
from statemw.store import Store

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

ENVIRON_KEY = "statemw.session"


def incoming_from_environ(environ: WSGIEnvironment, request: Any = None) -> Incoming:
    """The request as key sources see it; `request`: what UserID resolvers get (the environ)."""
    return Incoming(
        cookie_header=environ.get("HTTP_COOKIE", ""),
        header=lambda name: environ.get("HTTP_" + name.upper().replace("-", "_")),
        https=environ.get("wsgi.url_scheme") == "https",
        request=lambda: environ if request is None else request,
    )


def with_reply(headers: list[tuple[str, str]], reply: Reply) -> list[tuple[str, str]]:
    """A response's headers with a session's reply: Vary merged into one header, the id's
    headers added."""
    if reply.vary:
        names = [v.strip() for n, value in headers if n.lower() == "vary" for v in value.split(",")]
        names += [v for v in reply.vary if v.lower() not in {n.lower() for n in names}]
        headers = [(n, v) for n, v in headers if n.lower() != "vary"] + [("Vary", ", ".join(names))]
    return [*headers, *reply.headers]


def is_streamed(headers: Iterable[tuple[str, str]]) -> bool:
    """A response without Content-Length: its body is produced as it is sent."""
    return not any(name.lower() == "content-length" for name, _ in headers)


class SavedAtEnd:
    """A response body that runs `end` once: when it is used up, raises or is closed.

    Used up: before the server writes the body's end, so the client's next request sees the
    save. Closed: the server's close() after a disconnect.
    """

    def __init__(self, body: Iterable[bytes], end: Callable[[], object]) -> None:
        self._body = body
        self._chunks: Iterator[bytes] | None = None
        self._end: Callable[[], object] | None = end

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._chunks is None:
            self._chunks = iter(self._body)
        try:
            return next(self._chunks)
        except BaseException:  # used up, or the body's code raised: the server may not close()
            self._run_end()
            raise

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._run_end()

    def _run_end(self) -> None:
        end, self._end = self._end, None
        if end is not None:
            end()


class StateMiddleware:
    """Server-side sessions for a WSGI app; UserID resolvers receive the WSGI environ."""

    def __init__(
        self,
        app: WSGIApplication,
        store: Store | None = None,
        keys: Sequence[IdSource] | None = None,
        *,
        secret_key: SigningSecret | None = None,
        unavailable_status: int | None = 503,
    ) -> None:
        self.app = app
        self.requests = Requests(store, keys, secret_key=secret_key)
        self.unavailable_status = unavailable_status

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            binding = self.requests.open(incoming_from_environ(environ))
            environ[ENVIRON_KEY] = binding.session
            started = False

            def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                nonlocal started
                if exc_info is None:
                    reply = self.requests.close(binding, streaming=is_streamed(headers))
                    headers = with_reply(headers, reply)
                    started = True
                return start_response(status, headers, exc_info)

            def end() -> None:
                if started:
                    self.requests.finish(binding)  # a failure is logged: the response went out

            chunks = self.app(environ, start)
            if isinstance(chunks, list | tuple):  # all produced already: nothing more can change
                end()
                return chunks
            return SavedAtEnd(chunks, end)
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
