"""A session's semantic memory: its message vectors, read once, embedded once, saved once.

`SessionVectors.scores` is the flow `get_history(relevant_to=...)` runs (sync and async alike):

1. stored vectors of positions it has not read yet are read, in one backend call, and decoded
   into the session's VectorIndex; one whose text check does not match its message is left out
   (it was written for another text) and so computed again;
2. the messages still without a vector, and the query unless it is one of them or a message
   already embedded, go to `embed` in one batch (each distinct text once);
3. the new vectors wait in `pending` and go with the next save, whether their messages are
   stored already or are saved by that same save;
4. the index scores the span against the query.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import Any

from statemw._drive import ask
from statemw.backends.base import ReadVectors, StoreFlow
from statemw.codec import Codec
from statemw.messages import MessageRecord
from statemw.tokens import message_text
from statemw.vectors import Batched, Embed, Vector, VectorIndex, embed_many, text_check

QUERIES = 8
"""Query vectors a loaded session remembers (a request that asks twice embeds once)."""

Records = Callable[[int, int], StoreFlow[list[MessageRecord]]]


class SessionVectors:
    """The vectors of one loaded session: an index to score, and those not saved yet."""

    def __init__(self) -> None:
        self.index = VectorIndex()
        self.pending: dict[int, bytes] = {}  # position -> encoded, for the next save
        self.queries: dict[tuple[str, object], Any] = {}  # the last few queries' vectors

    def clear(self) -> None:
        """The log was replaced or deleted: positions mean other messages now."""
        self.index.clear()
        self.pending.clear()
        self.queries.clear()

    def committed(self, stored: int, appended: int, count: int, saved: dict[int, bytes]) -> None:
        """A save of `appended` messages and the vectors `saved` onto `stored` messages left
        `count` in the store. When others appended in between, ours moved: forget the positions
        we had guessed for them (the vectors already written there fail their check and are
        computed again)."""
        for position, data in saved.items():
            if self.pending.get(position) is data:  # not replaced while the save ran
                del self.pending[position]
        index = self.index
        if count == stored + appended:
            if index.read_to >= stored:
                index.read_to = count  # what we just wrote is what we hold
        else:
            index.drop(range(stored, stored + appended))

    def scores(
        self,
        session_id: str,
        codec: Codec,
        records: Records,
        stored: int,
        start: int,
        stop: int,
        query: str,
        embed: Embed | Batched,
    ) -> StoreFlow[list[float]]:
        """Similarity to `query` of each message in [start, stop) (positions from `stored` on
        are not saved yet)."""
        index = self.index
        for lo, hi in self._unread(start, min(stop, stored)):
            raw = yield from ask(ReadVectors(session_id, lo, hi))
            if raw:
                span = yield from records(lo, hi)
                rows: list[tuple[int, array[float], int | None]] = []
                for position, data in raw.items():
                    row, check = codec.decode_vector(session_id, data)
                    if check is not None and (
                        position - lo >= len(span)
                        or check != text_check(message_text(span[position - lo].message))
                    ):
                        continue  # written for another text
                    if check is None:  # the earlier form: as the model returned it
                        index.add(position, row, None)
                    else:
                        rows.append((position, row, check))
                index.add_stored(rows)
        span = yield from records(start, stop)
        query_vector = self._known(query, span, start)
        if query_vector is None:
            query_vector = self._asked(query, embed)
        missing = [p for p in range(start, stop) if p not in index]
        fresh = self._embed(
            codec, span, start, missing, query if query_vector is None else None, embed
        )
        if fresh is not None:
            query_vector = fresh
            self._remember(query, embed, fresh)
        if query_vector is not None and index.dims is not None and len(query_vector) != index.dims:
            # another model: every vector in the span is computed again with this one
            index.clear()
            index.read_from, index.read_to = start, min(stop, stored)
            self._embed(codec, span, start, list(range(start, stop)), None, embed)
        return index.scores(query_vector, start, stop)

    def _unread(self, start: int, stop: int) -> list[tuple[int, int]]:
        """The ranges of [start, stop) whose stored vectors were not read yet; marks them read
        (the read ranges stay one interval)."""
        index = self.index
        if start >= stop:
            return []
        if index.read_to <= index.read_from:
            index.read_from, index.read_to = start, stop
            return [(start, stop)]
        ranges = []
        if start < index.read_from:
            ranges.append((start, index.read_from))
        if stop > index.read_to:
            ranges.append((index.read_to, stop))
        index.read_from = min(start, index.read_from)
        index.read_to = max(stop, index.read_to)
        return ranges

    def _known(self, query: str, span: list[MessageRecord], start: int) -> Any:
        """The vector of a message in the span whose text is the query, if it has one."""
        index = self.index
        position = index.by_check.get(text_check(query))
        if position is None or position not in index or not 0 <= position - start < len(span):
            return None
        if message_text(span[position - start].message) != query:
            return None
        return index.vector(position)

    def _asked(self, query: str, embed: Embed | Batched) -> Any:
        """The vector of a query this session asked `embed` for lately."""
        try:
            return self.queries.get((query, embed))
        except TypeError:  # an embed that cannot be hashed: not remembered
            return None

    def _remember(self, query: str, embed: Embed | Batched, vector: Vector) -> None:
        try:
            self.queries[(query, embed)] = vector
        except TypeError:
            return
        if len(self.queries) > QUERIES:
            del self.queries[next(iter(self.queries))]

    def _embed(
        self,
        codec: Codec,
        span: list[MessageRecord],
        start: int,
        positions: list[int],
        query: str | None,
        embed: Embed | Batched,
    ) -> Vector | None:
        """Embed the messages at `positions` (and the query, if given) in one batch; keep each
        message's vector in the index and pending. Returns the query's vector."""
        texts = [message_text(span[p - start].message) for p in positions]
        if query is None and not texts:
            return None
        vectors = embed_many(embed, texts if query is None else [*texts, query])
        for position, text, vector in zip(positions, texts, vectors, strict=False):
            check = text_check(text)
            if self.index.add(position, vector, check):
                self.pending[position] = codec.encode_vector(vector, check)
        return None if query is None else vectors[-1]
