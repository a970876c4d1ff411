"""FastAPI dependency: `def chat(session: SessionDep)`; loads the session only where it is used."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from statemw.asgi import get_session
from statemw.session import Session


async def _session(connection: HTTPConnection) -> Session:
    return await get_session(connection)


SessionDep = Annotated[Session, Depends(_session)]
"""The request's statemw Session (needs statemw.asgi.StateMiddleware on the app)."""

__all__ = ["SessionDep"]
