"""Decoded message records, kept per store by their stored bytes.

A conversation's window is read on every turn, and all but the newest of its records were decoded
by the turn before (when this process served it). Keyed by the record's bytes, an entry cannot
go stale: the same bytes decode to the same message. Only plain (unencrypted) records are kept, so a
store with encryption at rest holds no decrypted message longer than a session does.
"""

from __future__ import annotations

from statemw.messages import Kind, Message, kind_of

CAPACITY = 4096
"""Records kept per store; past that the memory starts afresh."""

LARGEST = 4096
"""Bytes: a larger record is decoded each time it is read."""

_SCALARS = frozenset({str, int, float, bool, type(None)})


class DecodedMessages(dict[bytes, tuple[Message, int, float, Kind]]):
    """Record bytes -> (message, tokens, created_at, kind). Codec.decode_message reads it as a dict
    (a hit is one lookup) and hands out a copy of the message: a session may change its
    messages' dicts, and no other session sees that. Lock-free: dict reads and writes are
    atomic, and a lost entry costs one decode."""

    __slots__ = ("capacity",)

    def __init__(self, capacity: int = CAPACITY) -> None:
        super().__init__()
        self.capacity = capacity

    def keep(self, data: bytes, message: Message, tokens: int, created_at: float) -> None:
        """Keep a message just decoded from `data`, unless it is large or has nested content
        (lists, dicts), which a copy of the message's dict would share."""
        if len(data) > LARGEST:
            return
        for value in message.values():
            if type(value) not in _SCALARS:
                return
        if len(self) >= self.capacity:
            self.clear()
        self[data] = (message.copy(), tokens, created_at, kind_of(message))
