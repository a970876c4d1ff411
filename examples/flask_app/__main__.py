"""`python -m examples.flask_app`: serve the demo on 127.0.0.1 (PORT, default 8000)."""

from __future__ import annotations

import os

from examples import api
from examples.flask_app import create_app


def main() -> None:
    port = int(os.environ.get("PORT", "8000"))
    store = api.demo_store()
    print(f"statemw demo (Flask) on http://127.0.0.1:{port}  store: {store.url}", flush=True)
    create_app(store).run(host="127.0.0.1", port=port, threaded=True)


if __name__ == "__main__":
    main()
