"""The public API is what statemw/__init__.py exports, and __all__ lists all of it."""

from __future__ import annotations

import inspect

import statemw


def test_all_lists_every_public_name() -> None:
    public = {
        name
        for name, value in vars(statemw).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__.startswith("statemw")
    }
    assert public <= set(statemw.__all__)
    assert all(hasattr(statemw, name) for name in statemw.__all__)  # and type aliases (Message)


def test_every_exception_derives_from_state_error() -> None:
    errors = [
        getattr(statemw, n)
        for n in statemw.__all__
        if n.endswith(("Error", "Unavailable", "NotFound", "Value", "Exceeded", "Record"))
    ]
    assert errors
    assert all(issubclass(e, statemw.StateError) for e in errors)
