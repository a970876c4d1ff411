"""statemw.fastapi.SessionDep in a real FastAPI app."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.testclient import TestClient

from statemw import Store
from statemw.asgi import StateMiddleware
from statemw.fastapi import SessionDep


def make_app(store: Store, **options: Any) -> FastAPI:
    app = FastAPI()
    app.add_middleware(StateMiddleware, store=store, secret_key="k", **options)

    @app.post("/chat")
    async def chat(body: dict[str, str], session: SessionDep) -> dict[str, int]:
        session.add_message("user", body["text"])
        return {"count": len(session.messages)}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def test_the_dependency_hands_in_the_session(store: Store) -> None:
    client = TestClient(make_app(store))
    client.post("/chat", json={"text": "Find flights to Berlin"})
    assert client.post("/chat", json={"text": "Next Tuesday"}).json() == {"count": 2}


def test_with_lazy_paths_only_routes_using_the_dependency_load(store: Store) -> None:
    client = TestClient(make_app(store, lazy_paths=["/"]))
    client.post("/chat", json={"text": "hi"})
    assert client.get("/health").json() == {"status": "ok"}
    assert client.post("/chat", json={"text": "again"}).json() == {"count": 2}
