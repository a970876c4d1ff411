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


def test_every_exception_statemw_exports_derives_from_state_error() -> None:
    exported = [getattr(statemw, name) for name in statemw.__all__]
    errors = [e for e in exported if inspect.isclass(e) and issubclass(e, BaseException)]
    assert statemw.StateError in errors
    assert all(issubclass(e, statemw.StateError) for e in errors)


def test_every_exception_in_the_errors_module_is_exported() -> None:
    defined = {
        name
        for name, value in vars(statemw.errors).items()
        if inspect.isclass(value) and issubclass(value, BaseException)
    }
    assert defined <= set(statemw.__all__)
