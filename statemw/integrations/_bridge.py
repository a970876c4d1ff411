"""The web bridge's one check: the object a handler passes is a statemw Session."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from statemw.errors import ConfigurationError
from statemw.session import Session


def statemw_session(session: Mapping[str, Any]) -> Session:
    """`session` as a statemw Session (web frameworks type `request.session` as a dict)."""
    if not isinstance(session, Session):
        raise ConfigurationError(
            f"from_session() needs a statemw Session, got {type(session).__name__}: is statemw's "
            "middleware (statemw.asgi.StateMiddleware, FlaskState) installed on this app?"
        )
    return session
