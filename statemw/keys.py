"""Where a request's session id comes from, and how it travels back to the client.

    Cookie(secret_key=KEY)        a signed id in a cookie (browsers)
    Header("X-Session-ID")        a signed id in a header (API clients, mobile apps)
    UserID(lambda request: ...)   the app's own authenticated user: all devices, one conversation

A middleware tries its keys in order. Ids that travel are signed with itsdangerous; a list of
secret keys rotates (the first signs, all verify). A key source is pure logic: it never does I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any, Literal, Protocol

from itsdangerous import BadSignature, Signer, TimestampSigner

from statemw.errors import ConfigurationError, InvalidValue
from statemw.ids import check_session_id

SigningSecret = str | bytes | Sequence[str | bytes]


@dataclass(frozen=True, slots=True)
class Incoming:
    """What a key source sees of a request, whatever the framework."""

    cookies: Mapping[str, str]
    headers: Mapping[str, str]  # names lower-cased
    https: bool
    request: Any = None  # the framework's request, for UserID resolvers


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

    def find(self, incoming: Incoming) -> Found | None: ...

    def outgoing(self, session_id: str | None, incoming: Incoming) -> list[tuple[str, str]]:
        """Response headers carrying `session_id` to the client (None: forget it)."""
        ...

    def with_default_secret(self, secret_key: SigningSecret | None) -> IdSource:
        """This key, signing with `secret_key` if it has none of its own."""
        ...


class _Secret:
    """Signing keys whose repr never shows them (newest first, as statemw lists keys)."""

    def __init__(self, keys: SigningSecret) -> None:
        listed = [keys] if isinstance(keys, str | bytes) else list(keys)
        if not listed or not all(listed):
            raise ConfigurationError("secret_key must be a non-empty string or list of them")
        # itsdangerous signs with the last key
        self.newest_last = [k.encode() if isinstance(k, str) else k for k in reversed(listed)]

    def __repr__(self) -> str:
        return "Secret('**********')"


def _signer(secret: _Secret | None, salt: str, timed: bool) -> Signer | None:
    if secret is None:
        return None
    cls = TimestampSigner if timed else Signer
    return cls(secret.newest_last, salt=salt)


def _session_id_from(value: str | None, signer: Signer | None, max_age: int | None) -> str | None:
    """The id in a client's value, or None if it is missing, tampered, expired or malformed."""
    if not value:
        return None
    try:
        if signer is None:
            raw = value
        elif isinstance(signer, TimestampSigner):
            raw = signer.unsign(value, max_age=max_age).decode()
        else:
            raw = signer.unsign(value).decode()
        return check_session_id(raw)
    except (BadSignature, InvalidValue, UnicodeDecodeError):
        return None


@dataclass(frozen=True)
class Cookie:
    """A signed session id in a cookie: HttpOnly, SameSite=Lax, Secure on https by default."""

    secret_key: SigningSecret | None = field(default=None, repr=False)
    name: str = "session"
    max_age: int | None = 14 * 24 * 3600
    path: str = "/"
    domain: str | None = None
    same_site: Literal["lax", "strict", "none"] = "lax"
    https_only: bool | None = None  # None: Secure when the request came over https
    partitioned: bool = False
    http_only: bool = True
    carrier: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        if self.same_site.lower() not in ("lax", "strict", "none"):
            raise ConfigurationError(f"same_site must be lax, strict or none: {self.same_site!r}")

    def with_default_secret(self, secret_key: SigningSecret | None) -> Cookie:
        if self.secret_key is not None or secret_key is None:
            return self
        return dataclasses.replace(self, secret_key=secret_key)

    def _signer(self) -> Signer:
        if self.secret_key is None:
            raise ConfigurationError(
                "Cookie needs a secret_key (Cookie(secret_key=...), or the middleware's / "
                "Flask's SECRET_KEY)"
            )
        signer = _signer(_Secret(self.secret_key), "statemw.cookie", timed=True)
        assert signer is not None
        return signer

    def find(self, incoming: Incoming) -> Found | None:
        sid = _session_id_from(incoming.cookies.get(self.name), self._signer(), self.max_age)
        return None if sid is None else Found(session_id=sid)

    def outgoing(self, session_id: str | None, incoming: Incoming) -> list[tuple[str, str]]:
        parts = [f"{self.name}={self._signer().sign(session_id).decode() if session_id else ''}"]
        parts.append(f"Path={self.path}")
        if session_id is None:
            parts.append("Max-Age=0")
            parts.append("Expires=" + formatdate(0, usegmt=True))
        elif self.max_age is not None:
            parts.append(f"Max-Age={self.max_age}")
        if self.domain:
            parts.append(f"Domain={self.domain}")
        if self.http_only:
            parts.append("HttpOnly")
        parts.append(f"SameSite={self.same_site.capitalize()}")
        secure = incoming.https if self.https_only is None else self.https_only
        if secure or self.same_site.lower() == "none":
            parts.append("Secure")
        if self.partitioned:
            parts.append("Partitioned")
        return [("set-cookie", "; ".join(parts))]


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

    def with_default_secret(self, secret_key: SigningSecret | None) -> Header:
        if self.secret_key is not None or secret_key is None:
            return self
        return dataclasses.replace(self, secret_key=secret_key)

    def _signer(self) -> Signer | None:
        if not self.signed or self.secret_key is None:
            return None
        return _signer(_Secret(self.secret_key), "statemw.header", timed=False)

    def find(self, incoming: Incoming) -> Found | None:
        sid = _session_id_from(incoming.headers.get(self.name.lower()), self._signer(), None)
        return None if sid is None else Found(session_id=sid)

    def outgoing(self, session_id: str | None, incoming: Incoming) -> list[tuple[str, str]]:
        if session_id is None:
            return []
        signer = self._signer()
        return [(self.name, signer.sign(session_id).decode() if signer else session_id)]


@dataclass(frozen=True)
class UserID:
    """The app's own authenticated user id (None when nobody is logged in).

    `resolver(request)` receives the framework's request (Starlette Request, flask.request). A
    user's requests continue the user's most recent live session, on every device. Never build a
    resolver on a raw client header: it must come from your authentication.
    """

    resolver: Callable[[Any], str | None]
    carrier: bool = field(default=False, init=False)

    def with_default_secret(self, secret_key: SigningSecret | None) -> UserID:
        return self

    def find(self, incoming: Incoming) -> Found | None:
        user_id = self.resolver(incoming.request)
        if user_id is None or user_id == "":
            return None
        return Found(user_id=str(user_id))

    def outgoing(self, session_id: str | None, incoming: Incoming) -> list[tuple[str, str]]:
        return []


# Deprecated names, kept for one release (see CHANGELOG.md).
Key = IdSource
SecretKey = SigningSecret
