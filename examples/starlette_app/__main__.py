"""`python -m examples.starlette_app`: serve the demo on 127.0.0.1 (PORT, default 8000)."""

from __future__ import annotations

import os

import uvicorn

from examples import api
from examples.starlette_app import create_app


def main() -> None:
    port = int(os.environ.get("PORT", "8000"))
    store = api.demo_store()
    print(f"statemw demo (Starlette) on http://127.0.0.1:{port}  store: {store.url}", flush=True)
    uvicorn.run(create_app(store), host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
