"""Store configuration: URLs, options, the default store, and an unreachable backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from statemw import ConfigurationError, Session, Store, StoreUnavailable, configure, default_store


def test_a_store_does_no_io_until_first_used(tmp_path: Path) -> None:
    Store(f"diskcache://{tmp_path / 'never'}")
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("url", ["ftp://x", "nonsense", "diskcache://"])
def test_a_bad_url_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError):
        Store(url).get("abc")


@pytest.mark.parametrize("option", [{"ttl": 0}, {"idle": -1}, {"window": -1}])
def test_bad_options_are_configuration_errors(option: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Store("memory://", **option)


def test_an_unusable_diskcache_directory_is_store_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreUnavailable):
        Store(f"diskcache://{blocker}/sessions").get("abc")


def test_the_default_store_comes_from_statemw_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STATEMW_URL", f"diskcache://{tmp_path / 'env'}")
    configure(None)
    try:
        session = Session.create()
        session.save()
        assert default_store().url == f"diskcache://{tmp_path / 'env'}"
        assert (tmp_path / "env").is_dir()
    finally:
        configure(None)


def test_configure_accepts_a_url() -> None:
    try:
        store = configure("memory://")
        assert store is default_store()
    finally:
        configure(None)


def test_a_password_in_the_url_never_shows_in_repr() -> None:
    assert "hunter2" not in repr(Store("redis://:hunter2@127.0.0.1:6379/0"))
