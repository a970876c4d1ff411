"""Encoding, encryption at rest, and what happens to records that fail to decode."""

from __future__ import annotations

import base64
import enum
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st
from markupsafe import Markup

from statemw import (
    ConfigurationError,
    CorruptRecord,
    DecryptionError,
    Store,
    UnencodableValue,
    generate_key,
)
from statemw.backends.kv import KVBackend
from statemw.backends.postgres import PostgresBackend
from statemw.codec import Codec
from tests.postgres_server import raw_postgres_values
from tests.support import FakeClock, store_url

plain_data = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=20,
)


@given(plain_data)
def test_plain_data_round_trips_exactly(value: Any) -> None:
    codec = Codec()
    assert codec.decode(codec.encode(value, what="v"), session_id="s") == value


@given(plain_data)
def test_sealed_data_round_trips_exactly(value: Any) -> None:
    codec = Codec(b"k" * 32)
    assert codec.decode(codec.encode(value, what="v"), session_id="s") == value


def test_every_record_starts_with_its_format_byte() -> None:
    assert Codec().encode("x", what="v")[0] == 0x01
    assert Codec(generate_key()).encode("x", what="v")[0] == 0x02


def test_a_generated_key_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key "-..." on a command line would read as an option: such a draw is drawn again."""
    draws = iter([b"\xf8" + bytes(31), b"\x00" * 32])  # base64url of the first: "-AAA..."
    monkeypatch.setattr("statemw.codec.os.urandom", lambda n: next(draws))
    assert generate_key() == base64.urlsafe_b64encode(b"\x00" * 32).decode()


def test_a_list_of_keys_encrypts_with_the_first_and_decrypts_with_any() -> None:
    old, new = generate_key(), generate_key()
    written_with_old = Codec(old).encode("secret", what="v")
    rotated = Codec([new, old])
    assert rotated.decode(written_with_old, session_id="s") == "secret"
    assert Codec(new).decode(rotated.encode("x", what="v"), session_id="s") == "x"


def test_the_wrong_key_is_a_clear_decryption_error() -> None:
    sealed = Codec(generate_key()).encode("secret", what="v")
    with pytest.raises(DecryptionError, match="key not configured"):
        Codec(generate_key()).decode(sealed, session_id="s")
    with pytest.raises(DecryptionError, match="configure encryption_key"):
        Codec().decode(sealed, session_id="s")


def test_a_tampered_sealed_record_fails_authentication() -> None:
    codec = Codec(generate_key())
    sealed = bytearray(codec.encode("secret", what="v"))
    sealed[-1] ^= 1
    with pytest.raises(DecryptionError, match="authentication"):
        codec.decode(bytes(sealed), session_id="s")


@pytest.mark.parametrize("key", [b"short", "not base64!", [], b"x" * 31])
def test_a_bad_key_is_a_configuration_error(key: Any) -> None:
    with pytest.raises(ConfigurationError):
        Codec(key)


def test_keys_never_show_in_repr() -> None:
    key = generate_key()
    assert key not in repr(Codec(key))
    assert key not in repr(Store("memory://", encryption_key=key))


def test_an_unknown_format_byte_names_the_session() -> None:
    with pytest.raises(CorruptRecord, match=r"'sid-1'.*format byte 0x7f"):
        Codec().decode(b"\x7fjunk", session_id="sid-1")


def test_unencodable_values_say_what_they_are() -> None:
    with pytest.raises(UnencodableValue, match=r"state key 'when'.*set"):
        Codec().encode({1, 2}, what="state key 'when'")


def raw_values(store: Store) -> list[bytes]:
    backend = store.backend
    if isinstance(backend, PostgresBackend):
        return raw_postgres_values(backend)
    if not isinstance(backend, KVBackend):
        from tests.redis_server import raw_redis_values

        return raw_redis_values(backend)
    return [v for k in backend.kv.keys("") if (v := backend.kv.get(k)) is not None]


KV_ONLY = "reaches into KVBackend keys; tests/test_redis.py covers corrupt Redis records"


def test_encrypted_store_keeps_no_plaintext_at_rest(
    backend_kind: str, tmp_path: Any, clock: FakeClock
) -> None:
    store = Store(store_url(backend_kind, tmp_path), encryption_key=generate_key(), clock=clock)
    session = store.create(user_id="harsh")
    session["passport"] = "X1234567"
    session.user["home"] = "Bangalore"
    session.add_message("user", "Find flights to Berlin")
    session.save()

    blob = b"".join(raw_values(store))
    for secret in (b"X1234567", b"Bangalore", b"Berlin"):
        assert secret not in blob
    again = store.load(session.id)
    assert again["passport"] == "X1234567"
    assert again.messages[0]["content"] == "Find flights to Berlin"


def test_opening_an_encrypted_store_with_the_wrong_key_fails_clearly(
    tmp_path: Any, clock: FakeClock
) -> None:
    url = f"diskcache://{tmp_path}/s"
    session = Store(url, encryption_key=generate_key(), clock=clock).create()
    session["k"] = "v"
    session.save()
    with pytest.raises(DecryptionError) as info:
        Store(url, encryption_key=generate_key(), clock=clock).load(session.id)
    assert info.value.session_id == session.id


def test_a_corrupt_header_names_the_session_and_stays_for_inspection(store: Store) -> None:
    if not isinstance(store.backend, KVBackend):
        pytest.skip(KV_ONLY)
    session = store.create()
    session["k"] = "v"
    session.save()
    backend = store.backend
    assert isinstance(backend, KVBackend)
    backend.kv.set("h:" + session.id, b"\x01\xc1garbage")

    with pytest.raises(CorruptRecord) as info:
        store.load(session.id)
    assert info.value.session_id == session.id
    session["k"] = "overwrite?"
    with pytest.raises(CorruptRecord):
        session.save()
    assert backend.kv.get("h:" + session.id) == b"\x01\xc1garbage"


def test_a_corrupt_message_names_the_session(store: Store) -> None:
    if not isinstance(store.backend, KVBackend):
        pytest.skip(KV_ONLY)
    session = store.create()
    session.add_message("user", "hi")
    session.save()
    backend = store.backend
    assert isinstance(backend, KVBackend)
    from statemw.codec import pack

    backend.kv.set(f"m:{session.id}:0", pack([b"\x01\xc1"]))
    with pytest.raises(CorruptRecord, match=session.id):
        list(store.load(session.id).messages)


# -- the types Flask's tagged JSON carries ---------------------------------------------------------

tagged_values = st.recursive(
    plain_data
    | st.datetimes(timezones=st.none() | st.timezones())
    | st.dates()
    | st.uuids()
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.text().map(Markup),
    lambda inner: st.lists(inner, max_size=4).map(tuple) | st.lists(inner, max_size=4),
    max_leaves=10,
)


@given(tagged_values)
def test_flasks_tagged_types_round_trip_with_their_type(value: Any) -> None:
    codec = Codec()
    back = codec.decode(codec.encode(value, what="v"), session_id="s")
    assert back == value
    assert type(back) is type(value)


@pytest.mark.parametrize(
    "wall",
    [
        datetime(2024, 11, 3, 1, 30, tzinfo=ZoneInfo("America/Halifax")),  # happens twice
        datetime(2024, 3, 10, 2, 30, tzinfo=ZoneInfo("America/New_York")),  # never happens
    ],
    ids=["repeated hour", "skipped hour"],
)
@pytest.mark.parametrize("fold", [0, 1])
def test_a_datetime_in_a_named_zone_comes_back_as_it_was_across_a_clock_change(
    wall: datetime, fold: int
) -> None:
    codec = Codec()
    value = wall.replace(fold=fold)
    back = codec.decode(codec.encode(value, what="v"), session_id="s")
    assert (back, back.tzinfo, back.fold, back.utcoffset()) == (
        value,
        value.tzinfo,
        fold,
        value.utcoffset(),
    )


def test_a_datetime_whose_zone_is_unknown_here_keeps_its_offset() -> None:
    stored = msgpack.ExtType(2, b"2024-01-01T12:00:00+01:00[No/Such_Zone]")  # codec's datetime
    back = Codec().decode(b"\x01" + msgpack.packb(stored), session_id="s")
    assert back == datetime(2024, 1, 1, 11, tzinfo=UTC)
    assert back.utcoffset() == timedelta(hours=1)


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_tagged_types_survive_every_store(
    backend_kind: str, tmp_path: Any, clock: FakeClock, encrypted: bool
) -> None:
    key = generate_key() if encrypted else None
    store = Store(store_url(backend_kind, tmp_path), encryption_key=key, clock=clock)
    values = {
        "t": (1, 2, (3, "x")),
        "b": b"\xff",
        "m": Markup("<b>hi</b>"),
        "u": uuid.uuid4(),
        "d": datetime(2026, 11, 25, 15, 30, 1, 123456, tzinfo=UTC),
        "day": date(2026, 11, 25),
        "money": Decimal("12.50"),
        "flashes": [("message", "Hello")],
    }
    session = store.create()
    session.update(values)
    session.save()
    again = store.load(session.id)
    assert dict(again) == values
    assert {k: type(v) for k, v in again.items()} == {k: type(v) for k, v in values.items()}
    assert type(again["flashes"][0]) is tuple
    store.close()


def test_records_written_before_the_tagged_types_still_read() -> None:
    import msgpack

    old = b"\x01" + msgpack.packb({"cart": [1, 2], "name": "x"}, use_bin_type=True)
    assert Codec().decode(old, session_id="s") == {"cart": [1, 2], "name": "x"}


def test_a_subclass_of_a_plain_type_is_stored_as_that_type() -> None:
    class Color(enum.StrEnum):
        RED = "red"

    codec = Codec()
    assert codec.decode(codec.encode({"c": Color.RED}, what="v"), session_id="s") == {"c": "red"}


def test_an_unknown_type_names_the_key_and_what_can_be_stored(store: Store) -> None:
    session = store.create()
    with pytest.raises(UnencodableValue, match=r"'when'.*datetime, date, UUID"):
        session["when"] = object()
