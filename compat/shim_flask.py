"""pytest plugin (compat/run.py loads it with -p in the statemw run of Flask's tests).

Flask's own `app` fixture (tests/conftest.py: a Flask app with TESTING and SECRET_KEY set) is
renamed `framework_app` in the extracted copy; this `app` fixture takes that app and installs
statemw on it, as a user would: `FlaskState(app)`. Flask's other fixtures (`client`, `req_ctx`,
`app_ctx`) and the tests ask for `app`, so they all get the app with statemw installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from stores import open_store

from statemw.flask import FlaskState


@pytest.fixture
def app(framework_app: Flask, tmp_path: Path) -> Iterator[Flask]:
    with open_store(tmp_path) as store:
        FlaskState(framework_app, store=store)
        yield framework_app
