"""What a store keeps (statemw.records): a header read back is the header written, and a
header of the wrong shape is refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from statemw.records import Entry, SessionHeader, Summary, entries_of

texts = st.text(max_size=8)
times = st.floats(allow_nan=False, allow_infinity=False)
counts = st.integers(min_value=0, max_value=2**40)
entries = st.builds(Entry, st.binary(max_size=8), times, st.none() | times, st.none() | times)
headers = st.builds(
    SessionHeader,
    texts,
    st.none() | texts,
    times,
    times,
    st.none() | times,
    counts,
    counts,
    counts,
    st.none() | st.builds(Summary, st.binary(max_size=8), counts, counts, counts),
    st.lists(texts, max_size=3),
    st.dictionaries(texts, entries, max_size=3),
    st.none() | counts,
    counts,
)


@given(headers)
def test_a_header_read_back_is_the_header_written(header: SessionHeader) -> None:
    assert SessionHeader.from_wire(header.to_wire()) == header


def test_a_version_one_header_reads_with_its_lead_unknown() -> None:
    wire = SessionHeader("s", None, 1.0, 2.0, message_count=3).to_wire()[:12]
    wire[0] = 1
    header = SessionHeader.from_wire(wire)
    assert (header.message_count, header.lead, header.state_buckets) == (3, None, 0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (1, 7),  # session id
        (2, b"user"),
        (3, "yesterday"),
        (5, "never"),
        (6, 1.5),  # revision
        (7, None),  # message count
        (10, ["child", 3]),
        (11, {1: [b"v", 1.0, None]}),
        (11, []),
        (12, "lead"),
        (13, None),  # state buckets
    ],
)
def test_a_header_field_of_the_wrong_type_is_refused(field: int, value: object) -> None:
    wire = SessionHeader("s", None, 1.0, 2.0, children=["c"]).to_wire()
    wire[field] = value
    with pytest.raises(ValueError, match="wrong type"):
        SessionHeader.from_wire(wire)


@pytest.mark.parametrize("wire", [None, [], [2, "s"], [3, *range(13)], (2, *range(13))])
def test_what_is_not_a_header_is_refused(wire: object) -> None:
    with pytest.raises(ValueError, match="not a version"):
        SessionHeader.from_wire(wire)  # type: ignore[arg-type]


wire_fields = st.one_of(st.binary(max_size=4), times, st.integers(), st.none(), st.text(max_size=3))
entry_wires = st.one_of(
    entries.map(Entry.to_wire),
    st.lists(wire_fields, max_size=5),  # mostly not an entry
    wire_fields,
)


def built_one_by_one(wires: dict[str, object]) -> dict[str, Entry] | str:
    try:
        return {key: Entry.from_wire(wire) for key, wire in wires.items()}
    except ValueError as exc:
        return str(exc)


def built_together(wires: dict[str, object]) -> dict[str, Entry] | str:
    try:
        return entries_of(wires.items())
    except ValueError as exc:
        return str(exc)


@given(st.dictionaries(texts, entry_wires, max_size=6))
def test_stored_entries_read_together_are_what_each_reads_as_alone(
    wires: dict[str, object],
) -> None:
    assert built_together(wires) == built_one_by_one(wires)
