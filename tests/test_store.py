"""Store configuration: URLs, options, the default store, and an unreachable backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from statemw import ConfigurationError, Session, Store, StoreUnavailable, configure, default_store
from tests.support import FakeClock


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


def test_a_large_state_survives_growing_past_the_header_and_shrinking(store: Store) -> None:
    session = store.create()
    session.update({f"k{i}": i for i in range(500)})
    session.save()
    again = store.load(session.id)
    assert dict(again) == {f"k{i}": i for i in range(500)}
    again["k7"] = "changed"
    del again["k8"]
    again.set("brief", 1, ttl=10)
    again.save()
    third = store.load(session.id)
    assert third["k7"] == "changed"
    assert "k8" not in third
    assert third["brief"] == 1
    assert len(third) == 500
    third.clear()
    third["only"] = True
    third.save()
    assert dict(store.load(session.id)) == {"only": True}


def test_two_devices_changing_a_large_state_keep_both_keys_and_expired_ones_go(
    store: Store, clock: FakeClock
) -> None:
    session = store.create()
    session.update({f"k{i}": i for i in range(500)})
    for i in range(0, 500, 50):
        session.set(f"brief{i}", i, ttl=10)
    session.save()
    phone, laptop = store.load(session.id), store.load(session.id)
    clock.advance(11)
    phone["k1"] = "from the phone"
    laptop["k2"] = "from the laptop"
    del laptop["k3"]
    phone.save()
    laptop.save()
    merged = dict(store.load(session.id))
    assert (merged["k1"], merged["k2"], "k3" in merged) == (
        "from the phone",
        "from the laptop",
        False,
    )
    assert not [k for k in merged if k.startswith("brief")]
    assert len(merged) == 499


def test_a_large_state_takes_its_keys_along_on_rotate_and_leaves_nothing_on_delete(
    store: Store,
) -> None:
    session = store.create()
    session.update({f"k{i}": i for i in range(300)})
    session.save()
    session.rotate()
    assert len(store.load(session.id)) == 300
    session.delete()
    assert list(store.session_ids()) == []


def test_thousands_of_keys_and_messages_save_in_one_go(store: Store) -> None:
    session = store.create()
    session.update({f"k{i}": i for i in range(5000)})
    for i in range(2500):
        session.add_message("user", str(i))
    session.save()
    again = store.load(session.id)
    assert len(again) == 5000
    assert len(again.messages) == 2500
