"""What a store keeps (statemw.records): a header read back is the header written, and a
header of the wrong shape is refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from statemw.records import Entry, SessionHeader, Summary

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
