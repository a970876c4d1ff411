"""The key-value layout's pure parts (statemw.backends.kv), below the backends that use it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from statemw.backends.kv import appended
from statemw.codec import pack

records = st.lists(st.binary(max_size=300), max_size=40)


@given(records, st.lists(st.binary(max_size=300), min_size=1, max_size=40))
def test_appending_to_a_chunk_gives_the_bytes_of_the_whole_chunk_packed(
    stored: list[bytes], added: list[bytes]
) -> None:
    assert appended(pack(stored), len(stored), added) == pack(stored + added)


def test_a_chunk_past_sixty_five_thousand_records_keeps_its_length() -> None:
    stored = [b"r"] * 70_000
    assert appended(pack(stored), len(stored), [b"new"]) == pack([*stored, b"new"])


@given(records)
def test_a_chunk_holding_other_than_the_counted_records_is_not_appended_to(
    stored: list[bytes],
) -> None:
    assert appended(pack(stored), len(stored) + 1, [b"x"]) is None
    if stored:
        assert appended(pack(stored), len(stored) - 1, [b"x"]) is None


def test_bytes_that_are_not_an_array_are_not_appended_to() -> None:
    assert appended(pack({"not": "a list"}), 1, [b"x"]) is None
    assert appended(b"", 0, [b"x"]) is None
    assert appended(b"\xdc\x00", 0, [b"x"]) is None  # a cut-off length
