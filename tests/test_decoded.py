"""Decoded message records kept by their bytes: read once per process, shared by the sessions
that read them, and copied before code outside statemw gets one."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st
from msgpack import unpackb  # as it is, before the `unpacks` fixture counts its calls

from statemw import Store, generate_key
from statemw._decoded import LARGEST, DecodedMessages, KeptByBytes
from statemw.codec import Codec, _unext
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


def test_a_record_read_again_is_the_same_shared_record() -> None:
    codec = Codec()
    data = encoded({"role": "user", "content": "hi"})
    first = codec.decode_message("s", data)
    assert codec.decode_message("s", bytes(data)) is first
    assert first.shared


def test_a_message_with_nested_content_is_decoded_each_time(unpacks: list[bytes]) -> None:
    codec = Codec()
    data = encoded({"role": "user", "content": [{"type": "text", "text": "hi"}]})
    first = codec.decode_message("s", data)
    first.message["content"][0]["text"] = "changed"
    assert codec.decode_message("s", data).message["content"][0]["text"] == "hi"
    assert len(unpacks) == 2
    assert not first.shared


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


def kept(decoded: DecodedMessages, *names: bytes) -> None:
    for name in names:
        decoded.keep(name, MessageRecord({"role": "user", "content": name.decode()}, 1, 0.0))


def test_a_full_memory_starts_a_new_generation() -> None:
    decoded = DecodedMessages(capacity=2)
    kept(decoded, b"0", b"1", b"2")
    assert list(decoded) == [b"2"]
    assert decoded.recall(b"0") == MessageRecord({"role": "user", "content": "0"}, 1, 0.0)


def test_a_record_recalled_from_the_older_generation_survives_the_next() -> None:
    decoded = DecodedMessages(capacity=2)
    kept(decoded, b"0", b"1", b"2")
    decoded.recall(b"0")
    kept(decoded, b"3", b"4")
    assert decoded.recall(b"0") is not None
    assert decoded.recall(b"1") is None


def test_a_record_in_the_older_generation_is_not_decoded_again(unpacks: list[bytes]) -> None:
    codec = Codec()
    codec._decoded = DecodedMessages(capacity=1)
    first, second = (encoded({"role": "user", "content": text}) for text in ("hi", "yo"))
    codec.decode_message("s", first)
    codec.decode_message("s", second)
    assert codec.decode_message("s", first).shared
    assert len(unpacks) == 2


def test_a_message_read_again_comes_with_its_kind_worked_out() -> None:
    codec = Codec()
    data = encoded({"role": "system", "content": "Be terse."})
    codec.decode_message("s", data)
    kind = codec.decode_message("s", data).kind
    assert kind is not None
    assert kind.system


def saved(*messages: dict[str, Any]) -> tuple[Store, str]:
    store = Store("memory://")
    session = store.create()
    for message in messages:
        session.add_message(message)
    session.save()
    return store, session.id


def test_a_changed_message_in_one_session_is_not_what_the_next_load_sees() -> None:
    store, sid = saved({"role": "user", "content": "to Berlin"})
    store.load(sid).messages[0]["content"] = "to Munich"
    assert store.load(sid).get_history() == [{"role": "user", "content": "to Berlin"}]


def test_a_changed_message_stays_changed_in_its_own_session() -> None:
    store, sid = saved({"role": "user", "content": "to Berlin"})
    session = store.load(sid)
    session.messages[0]["content"] = "to Munich"
    assert session.messages[0]["content"] == "to Munich"
    assert session.get_history() == [{"role": "user", "content": "to Munich"}]


def test_a_session_hands_out_the_same_message_each_time() -> None:
    store, sid = saved({"role": "user", "content": "hi"})
    session = store.load(sid)
    assert session.messages[0] is session.messages[0]


def test_messages_iterated_are_the_sessions_own() -> None:
    store, sid = saved({"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"})
    for message in store.load(sid).messages:
        message["content"] = "changed"
    assert [m["content"] for m in store.load(sid).messages] == ["hi", "yo"]


@pytest.mark.anyio
async def test_fetched_messages_are_the_sessions_own() -> None:
    store, sid = saved({"role": "user", "content": "hi"})
    (await store.load(sid).fetch_messages())[0]["content"] = "changed"
    assert store.load(sid).messages[0]["content"] == "hi"


def message_decodes(unpacks: list[bytes]) -> int:
    """How many of the unpacks were of a message record (not a header or a chunk)."""
    records = [unpackb(d, strict_map_key=False, ext_hook=_unext) for d in unpacks]
    return sum(type(r) is list and len(r) == 3 and type(r[0]) is dict for r in records)


def test_a_message_just_saved_is_not_decoded_by_the_next_load(unpacks: list[bytes]) -> None:
    store, sid = saved({"role": "user", "content": "to Berlin"})
    unpacks.clear()
    assert store.load(sid).get_history() == [{"role": "user", "content": "to Berlin"}]
    assert message_decodes(unpacks) == 0


def test_a_message_changed_after_its_save_is_not_what_the_next_load_sees() -> None:
    store = Store("memory://")
    session = store.create()
    session.add_message("user", "to Berlin")
    session.save()
    session.messages[0]["content"] = "to Munich"
    assert store.load(session.id).get_history() == [{"role": "user", "content": "to Berlin"}]


def test_a_message_changed_before_its_save_is_saved_changed() -> None:
    store = Store("memory://")
    session = store.create()
    session.add_message("user", "to Berlin")
    session.messages[0]["content"] = "to Munich"
    session.save()
    assert store.load(session.id).get_history() == [{"role": "user", "content": "to Munich"}]


def test_a_message_with_a_key_of_a_str_subclass_loads_as_stored() -> None:
    class Field(StrEnum):
        NAME = "name"

    store, sid = saved({"role": "user", "content": "hi", Field.NAME: "Ada"})
    (message,) = store.load(sid).get_history()
    assert message == {"role": "user", "content": "hi", "name": "Ada"}
    assert {type(key) for key in message} == {str}


def test_a_message_saved_encrypted_is_decoded_by_the_next_load(unpacks: list[bytes]) -> None:
    store = Store("memory://", encryption_key=generate_key())
    session = store.create()
    session.add_message("user", "secret")
    session.save()
    unpacks.clear()
    store.load(session.id).get_history()
    assert message_decodes(unpacks) == 1


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
def test_any_message_changed_in_one_session_is_intact_in_the_next(fields: dict[str, Any]) -> None:
    message = {**fields, "role": "user"}
    store, sid = saved(message)
    first, second = store.load(sid), store.load(sid)
    assert first.messages[0] == second.messages[0] == message
    scramble(first.messages[0])
    assert second.messages[0] == store.load(sid).messages[0] == message
    assert store.load(sid).get_history(format="raw") == [message]


# -- state values and stored entries (KeptByBytes) -----------------------------------------------


def test_what_is_kept_by_bytes_moves_to_the_older_generation_past_its_budget() -> None:
    kept: KeptByBytes[str] = KeptByBytes(budget=10, overhead=0)
    for n in range(3):
        kept.keep(bytes([n]) * 6, f"value {n}")
    assert kept.older == {bytes([0]) * 6: "value 0", bytes([1]) * 6: "value 1"}
    assert kept == {bytes([2]) * 6: "value 2"}


def test_what_is_recalled_from_the_older_generation_survives_the_next() -> None:
    kept: KeptByBytes[str] = KeptByBytes(budget=10, overhead=0)
    kept.keep(b"first!", "first")
    kept.keep(b"second", "second")
    kept.keep(b"third!", "third")  # first and second are the older generation now
    assert kept.recall(b"first!") == "first"
    kept.keep(b"fourth", "fourth")  # the newest (third, first) becomes the older one
    assert kept.recall(b"first!") == "first"
    assert kept.recall(b"second", "gone") == "gone"


def test_a_recall_while_another_thread_starts_a_generation_still_answers() -> None:
    kept: KeptByBytes[str] = KeptByBytes(budget=10)

    class Swapped(dict[bytes, str]):
        def __contains__(self, data: object) -> bool:
            found = super().__contains__(data)
            kept.older = {}  # another thread's keep, between the lookup and the read
            return found

    kept.older = Swapped({b"data": "value"})
    assert kept.recall(b"data") == "value"


def test_each_value_kept_counts_its_overhead_against_the_budget() -> None:
    kept: KeptByBytes[int] = KeptByBytes(budget=1000, overhead=100)
    for n in range(12):
        kept.keep(bytes([n]), n)  # 12 bytes of data, 1,212 with what each costs beyond it
    assert len(kept.older) == 10
    assert len(kept) == 2


def test_bytes_larger_than_kept_are_not_kept() -> None:
    kept: KeptByBytes[str] = KeptByBytes(budget=1000, largest=4)
    assert kept.keep(b"12345", "large") == "large"
    assert kept == {}


def saved_state(store: Store, **values: Any) -> str:
    session = store.create()
    session.update(values)
    session.save()
    return str(session.id)


def test_a_state_value_read_again_is_not_decoded_again(unpacks: list[bytes]) -> None:
    store = Store("memory://")
    sid = saved_state(store, city="Berlin", count=3)
    store.load(sid)
    unpacks.clear()
    assert dict(store.load(sid)) == {"city": "Berlin", "count": 3}
    assert not [data for data in unpacks if b"Berlin" in data]


def test_a_list_in_the_state_changed_in_place_is_not_what_the_next_load_sees() -> None:
    store = Store("memory://")
    sid = saved_state(store, cities=["Berlin"], deal={"price": 10})
    first = store.load(sid)
    first["cities"].append("Rome")
    first["deal"]["price"] = 0
    again = store.load(sid)
    assert (again["cities"], again["deal"]) == (["Berlin"], {"price": 10})


def test_encrypted_state_values_are_not_kept_decrypted() -> None:
    store = Store("memory://", encryption_key=generate_key())
    sid = saved_state(store, city="Berlin")
    assert store.load(sid)["city"] == "Berlin"
    assert store.codec._values == {}
    assert store.codec._values.older == {}


@given(st.dictionaries(st.text(max_size=8), value, max_size=4))
def test_any_state_changed_in_one_session_is_intact_in_the_next(state: dict[str, Any]) -> None:
    store = Store("memory://")
    sid = saved_state(store, **state)
    first, second = store.load(sid), store.load(sid)
    assert dict(first) == dict(second) == state
    for item in first.values():
        if isinstance(item, list | dict):
            scramble(item)
    assert dict(second) == dict(store.load(sid)) == state
