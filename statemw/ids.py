"""Session ids: 144 random bits from `secrets`, and the checks on ids that come from outside."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable

from statemw.errors import InvalidValue

_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.:@+=-]{0,127}")
_CHILD = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}")


def not_an_option(draw: Callable[[], str]) -> str:
    """What `draw()` returns, drawn again while it starts with "-": random text a user may pass
    on a command line (an id, a key) is never mistaken for an option."""
    while True:
        text = draw()
        if not text.startswith("-"):
            return text


def new_session_id() -> str:
    """24 url-safe characters from the OS's CSPRNG (about 144 bits); never starting with "-"."""
    return not_an_option(lambda: secrets.token_urlsafe(18))


def check_session_id(session_id: object) -> str:
    """Check an id a caller names (`Session.load("abc123")`); InvalidValue if malformed."""
    if not isinstance(session_id, str):
        raise InvalidValue(f"a session id is a string, got {type(session_id).__name__}")
    if "/" not in session_id and _ID.fullmatch(session_id):  # the usual case: a top-level id
        return session_id
    root, *children = session_id.split("/")
    if not _ID.fullmatch(root) or not all(_CHILD.fullmatch(c) for c in children):
        raise InvalidValue(
            f"bad session id {session_id[:80]!r}: 1-128 of A-Z a-z 0-9 _ . : @ + = -, "
            "then optional /child names"
        )
    return session_id


def check_child_name(name: object) -> str:
    if not isinstance(name, str) or not _CHILD.fullmatch(name):
        raise InvalidValue(f"bad sub-session name {name!r}: 1-64 of A-Z a-z 0-9 _ . -")
    return name
