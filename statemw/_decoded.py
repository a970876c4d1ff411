"""Decoded message records, kept per store by their stored bytes.

A conversation's window is read on every turn, and all but the newest of its records were decoded
by the turn before, in this process or another. Keyed by the record's bytes, an entry cannot go
stale: the same bytes decode to the same message. Only plain (unencrypted) records are kept, so a
store with encryption at rest holds no decrypted message longer than a session does.
"""

from __future__ import annotations

from statemw.messages import Kind, Message, MessageRecord

CAPACITY = 4096
"""Records kept per store; past that the memory starts afresh."""

LARGEST = 4096
"""Bytes: a larger record is decoded each time it is read."""

_SCALARS = frozenset({str, int, float, bool, type(None)})


class DecodedMessages:
    """Records decoded before, handed out as copies: a session may change its messages' dicts,
    and no other session sees that. Lock-free: dict reads and writes are atomic, and a lost
    entry costs one decode."""

    __slots__ = ("_records", "capacity")

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._records: dict[bytes, tuple[Message, int, float, Kind]] = {}

    def get(self, data: bytes) -> MessageRecord | None:
        found = self._records.get(data) if type(data) is bytes else None
        if found is None:
            return None
        message, tokens, created_at, kind = found
        return MessageRecord(message.copy(), tokens, created_at, kind)

    def keep(self, data: bytes, record: MessageRecord) -> None:
        """Keep a record just decoded from `data`, unless it is large or has nested content
        (lists, dicts), which a copy of the message's dict would share."""
        if type(data) is not bytes or len(data) > LARGEST:
            return
        message = record.message
        for value in message.values():
            if type(value) not in _SCALARS:
                return
        records = self._records
        if len(records) >= self.capacity:
            records.clear()
        kind = record.kind or record.classify()
        records[data] = (message.copy(), record.tokens, record.created_at, kind)
