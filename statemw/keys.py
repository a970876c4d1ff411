"""Where a request's session id comes from, and how it travels back to the client.

    Cookie(secret_key=KEY)        a signed id in a cookie (browsers)
    Header("X-Session-ID")        a signed id in a header (API clients, mobile apps)
    UserID(lambda request: ...)   the app's own authenticated user: all devices, one conversation

A middleware tries its keys in order. Ids that travel are signed with itsdangerous; a list of
secret keys rotates (the first signs, all verify). A key source is pure logic: it never does I/O.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

from statemw._signing import Signing
from statemw.errors import ConfigurationError, InvalidValue
from statemw.ids import check_session_id

SigningSecret = str | bytes | Sequence[str | bytes]


class Incoming:
    """What a key source sees of a request, whatever the framework; read on demand, so a request
    pays only for what its keys look at."""

    __slots__ = ("_cookie_header", "_cookies", "_header", "_request", "https")

    def __init__(
        self,
        *,
        cookie_header: str,
        header: Callable[[str], str | None],
        https: bool,
        request: Callable[[], Any],
    ) -> None:
        self._cookie_header = cookie_header
        self._cookies: dict[str, str] | None = None
        self._header = header
        self._request = request
        self.https = https

    @property
    def cookies(self) -> Mapping[str, str]:
        if self._cookies is None:
            self._cookies = parse_cookies(self._cookie_header)
        return self._cookies

    def header(self, name: str) -> str | None:
        """A request header by its name (any case)."""
        return self._header(name.lower())

    @property
    def request(self) -> Any:
        """The framework's request (Starlette Request, flask.request, the WSGI environ)."""
        return self._request()


def parse_cookies(header: str) -> dict[str, str]:
    """Cookie header -> dict, leniently (a malformed pair is skipped, never an error)."""
    cookies: dict[str, str] = {}
    for chunk in header.split(";"):
        name, sep, value = chunk.partition("=")
        if sep and name.strip():
            cookies.setdefault(name.strip(), value.strip().strip('"'))
    return cookies


@dataclass(frozen=True, slots=True)
class Found:
    """A key's answer: a session id it vouches for, or a user whose conversation to continue."""

    session_id: str | None = None
    user_id: str | None = None


class IdSource(Protocol):
    """Where a request's session id comes from (a middleware's `keys=[...]`). `carrier` sources
    also send the id back to the client (cookie, header)."""

    @property
    def carrier(self) -> bool: ...

    @property
    def vary(self) -> str | None:
        """The request header a response that uses the session depends on (for `Vary`)."""
        ...

    def find(self, incoming: Incoming) -> Found | None: ...

    def outgoing(self, session_id: str | None, incoming: Incoming) -> list[tuple[str, str]]:
        """Response headers carrying `session_id` to the client (None: forget it)."""
        ...

    def with_default_secret(self, secret_key: SigningSecret | None) -> IdSource:
        """This key, signing with `secret_key` if it has none of its own."""
        ...


def _seconds(max_age: int | float | timedelta | None) -> int | None:
    """max_age as whole seconds; a timedelta is accepted (Flask's PERMANENT_SESSION_LIFETIME)."""
    if max_age is None:
        return None
    if isinstance(max_age, timedelta):
        return int(max_age.total_seconds())
    if isinstance(max_age, bool) or not isinstance(max_age, int | float):
        raise ConfigurationError(f"max_age must be seconds or a timedelta, got {max_age!r}")
    return int(max_age)


@dataclass(frozen=True)
class Cookie:
    """A signed session id in a cookie: HttpOnly, SameSite=Lax, Secure on https by default.

    The Set-Cookie text is Starlette's SessionMiddleware's, attribute for attribute."""

    secret_key: SigningSecret | None = field(default=None, repr=False)
    name: str = "session"
    max_age: int | timedelta | None = 14 * 24 * 3600  # whole seconds once constructed
    path: str = "/"
    domain: str | None = None
    same_site: Literal["lax", "strict", "none"] = "lax"
    https_only: bool | None = None  # None: Secure when the request came over https
    partitioned: bool = False
    http_only: bool = True
    carrier: bool = field(default=True, init=False)
    vary: str | None = field(default="Cookie", init=False)
    _signing: Signing | None = field(default=None, init=False, repr=False, compare=False)
    _seconds: int | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        same_site = str(self.same_site).lower()
        if same_site not in ("lax", "strict", "none"):
            raise ConfigurationError(f"same_site must be lax, strict or none: {self.same_site!r}")
        object.__setattr__(self, "same_site", same_site)
        seconds = _seconds(self.max_age)
        object.__setattr__(self, "max_age", seconds)
        object.__setattr__(self, "_seconds", seconds)
        if self.secret_key is not None:
            object.__setattr__(
                self, "_signing", Signing(self.secret_key, "statemw.cookie", timed=True)
            )

    def with_default_secret(self, secret_key: SigningSecret | None) -> Cookie:
        if self.secret_key is not None or secret_key is None:
            return self
        return dataclasses.replace(self, secret_key=secret_key)

    def signing(self) -> Signing:
        if self._signing is None:
            raise ConfigurationError(
                "Cookie needs a secret_key (Cookie(secret_key=...), or the middleware's / "
                "Flask's SECRET_KEY)"
            )
        return self._signing

    def find(self, incoming: Incoming) -> Found | None:
        value = incoming.cookies.get(self.name)
        sid = self.signing().unsign(value, self._seconds) if value else None
        return None if sid is None else Found(session_id=sid)

    def outgoing(self, session_id: str | None, incoming: Incoming) -> list[tuple[str, str]]:
        if session_id is None:  # Starlette's way of clearing: "null", expired long ago
            head = f"{self.name}=null; path={self.path}; expires=Thu, 01 Jan 1970 00:00:00 GMT; "
        else:
            max_age = f"Max-Age={self._seconds}; " if self._seconds is not None else ""
            head = f"{self.name}={self.signing().sign(session_id)}; path={self.path}; {max_age}"
        return [("set-cookie", head + self._flags(incoming))]

    def _flags(self, incoming: Incoming) -> str:
        flags = ("httponly; " if self.http_only else "") + f"samesite={self.same_site}"
        secure = incoming.https if self.https_only is None else self.https_only
        if secure or self.same_site == "none":
            flags += "; secure"
        if self.domain:  # then partitioned: Starlette's order
            flags += f"; domain={self.domain}"
        if self.partitioned:
            flags += "; partitioned"
        return flags


@dataclass(frozen=True)
class Header:
    """A session id in a request header, sent back in the response's header of the same name.

    Signed with its own secret_key, else the middleware's (or a Cookie's); with no key anywhere
    the id travels unsigned: it is 144 random bits, and an id the store does not know is never
    adopted.
    """

    name: str = "X-Session-ID"
    signed: bool = True
    secret_key: SigningSecret | None = field(default=None, repr=False)
    carrier: bool = field(default=True, init=False)
    vary: str | None = field(default=None, init=False)
    _signing: Signing | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "vary", self.name)
        if self.signed and self.secret_key is not None:
            object.__setattr__(
                self, "_signing", Signing(self.secret_key, "statemw.header", timed=False)
            )

    def with_default_secret(self, secret_key: SigningSecret | None) -> Header:
        if self.secret_key is not None or secret_key is None:
            return self
        return dataclasses.replace(self, secret_key=secret_key)

    def find(self, incoming: Incoming) -> Found | None:
        value = incoming.header(self.name)
        if not value:
            return None
        if self._signing is None:
            try:
                return Found(session_id=check_session_id(value))
            except InvalidValue:
                return None
        sid = self._signing.unsign(value, None)
        return None if sid is None else Found(session_id=sid)

    def outgoing(self, session_id: str | None, incoming: Incoming) -> list[tuple[str, str]]:
        if session_id is None:
            return []
        return [(self.name, self._signing.sign(session_id) if self._signing else session_id)]


@dataclass(frozen=True)
class UserID:
    """The app's own authenticated user id (None when nobody is logged in).

    `resolver(request)` receives the framework's request (Starlette Request, flask.request). A
    user's requests continue the user's most recent live session, on every device. Never build a
    resolver on a raw client header: it must come from your authentication.
    """

    resolver: Callable[[Any], str | None]
    carrier: bool = field(default=False, init=False)
    vary: str | None = field(default=None, init=False)

    def with_default_secret(self, secret_key: SigningSecret | None) -> UserID:
        return self

    def find(self, incoming: Incoming) -> Found | None:
        user_id = self.resolver(incoming.request)
        if user_id is None or user_id == "":
            return None
        return Found(user_id=str(user_id))

    def outgoing(self, session_id: str | None, incoming: Incoming) -> list[tuple[str, str]]:
        return []


# Deprecated names, kept for one release (see CHANGELOG.md): they warn when used.
_RENAMED = {"Key": "IdSource", "SecretKey": "SigningSecret"}

if TYPE_CHECKING:
    Key = IdSource
    SecretKey = SigningSecret


def __getattr__(name: str) -> object:
    new = _RENAMED.get(name)
    if new is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"statemw.keys.{name} is deprecated and will be removed in the next release: "
        f"use statemw.keys.{new}",
        DeprecationWarning,
        stacklevel=2,
    )
    return globals()[new]
