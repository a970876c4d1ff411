"""Decoded message records kept by their bytes: read once per process, handed out as copies."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from statemw import Store, generate_key
from statemw._decoded import LARGEST, DecodedMessages
from statemw.codec import Codec
from statemw.messages import MessageRecord


def encoded(message: dict[str, Any], codec: Codec | None = None) -> bytes:
    return (codec or Codec()).encode([message, 3, 1.5], what="a message")


@pytest.fixture
def unpacks(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Each msgpack.unpackb the codec makes, by its bytes."""
    seen: list[bytes] = []
    original = msgpack.unpackb

    def counting(data: bytes, **options: Any) -> Any:
        seen.append(data)
        return original(data, **options)

    monkeypatch.setattr("statemw.codec.msgpack.unpackb", counting)
    return seen


def test_a_record_read_again_is_not_decoded_again(unpacks: list[bytes]) -> None:
    codec = Codec()
    data = encoded({"role": "user", "content": "hi"})
    first, again = codec.decode_message("s", data), codec.decode_message("s", bytes(data))
    assert first == again == MessageRecord({"role": "user", "content": "hi"}, 3, 1.5)
    assert len(unpacks) == 1


def test_each_read_hands_out_its_own_message(unpacks: list[bytes]) -> None:
    codec = Codec()
    data = encoded({"role": "user", "content": "hi"})
    codec.decode_message("s", data).message["content"] = "changed by one request"
    codec.decode_message("s", data).message["role"] = "changed by another"
    assert codec.decode_message("s", data).message == {"role": "user", "content": "hi"}


def test_a_message_with_nested_content_is_decoded_each_time(unpacks: list[bytes]) -> None:
    codec = Codec()
    data = encoded({"role": "user", "content": [{"type": "text", "text": "hi"}]})
    codec.decode_message("s", data).message["content"][0]["text"] = "changed"
    assert codec.decode_message("s", data).message["content"][0]["text"] == "hi"
    assert len(unpacks) == 2


def test_a_large_record_is_decoded_each_time(unpacks: list[bytes]) -> None:
    codec = Codec()
    data = encoded({"role": "user", "content": "x" * LARGEST})
    codec.decode_message("s", data)
    codec.decode_message("s", data)
    assert len(unpacks) == 2


def test_encrypted_records_are_not_kept_decrypted(unpacks: list[bytes]) -> None:
    codec = Codec(generate_key())
    data = encoded({"role": "user", "content": "secret"}, codec)
    codec.decode_message("s", data)
    codec.decode_message("s", data)
    assert len(unpacks) == 2


def test_a_full_memory_starts_afresh() -> None:
    decoded = DecodedMessages(capacity=2)
    for i in range(3):
        decoded.keep(b"%d" % i, {"role": "user", "content": str(i)}, 1, 0.0)
    assert b"0" not in decoded
    assert decoded[b"2"][:3] == ({"role": "user", "content": "2"}, 1, 0.0)


def test_a_message_read_again_comes_with_its_kind_worked_out() -> None:
    codec = Codec()
    data = encoded({"role": "system", "content": "Be terse."})
    codec.decode_message("s", data)
    kind = codec.decode_message("s", data).kind
    assert kind is not None
    assert kind.system


def test_a_changed_message_in_one_session_is_not_what_the_next_load_sees() -> None:
    store = Store("memory://")
    session = store.create()
    session.add_message("user", "to Berlin")
    session.save()
    store.load(session.id).messages[0]["content"] = "to Munich"
    assert store.load(session.id).get_history() == [{"role": "user", "content": "to Berlin"}]
    store.close()


scalar = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20)
value = st.recursive(
    scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
)


def scramble(obj: Any) -> None:
    """Empty every list and dict inside obj, and obj itself."""
    inner = obj.values() if isinstance(obj, dict) else obj
    for item in list(inner):
        if isinstance(item, list | dict):
            scramble(item)
    obj.clear()


@given(st.dictionaries(st.text(max_size=8), value, max_size=4))
def test_any_message_read_twice_is_equal_and_shares_nothing(fields: dict[str, Any]) -> None:
    codec = Codec()
    data = encoded({**fields, "role": "user"})
    expected = msgpack.unpackb(data[1:], strict_map_key=False)[0]
    first = codec.decode_message("s", data)
    second = codec.decode_message("s", data)
    assert first == second
    scramble(first.message)
    assert codec.decode_message("s", data).message == second.message == expected
