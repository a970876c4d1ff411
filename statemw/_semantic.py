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

`SessionVectors.ranked` is the same over a long span (window.SPARSE_FROM messages or more)
without reading it all: the span's sketch blocks (statemw.sketch) are read once, positions no
block covers are read as vectors (and their messages, to check them), the CANDIDATES best by
sketch are read as vectors and scored exactly, and whichever full blocks are now known go with
the next save. Candidates' checks are verified when the window reads their messages
(`verified`); one that fails is dropped and its message embedded again.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import Any

from statemw._drive import ask
from statemw.backends.base import ReadVectors, ReadVectorsAt, StoreFlow
from statemw.codec import Codec
from statemw.messages import MessageRecord
from statemw.sketch import BLOCK, CANDIDATES, Sketches, block_key, sketches
from statemw.tokens import message_text
from statemw.vectors import Batched, Embed, Vector, VectorIndex, embed_many, text_check
from statemw.window import Ranked

QUERIES = 8
"""Query vectors a loaded session remembers (a request that asks twice embeds once)."""

Records = Callable[[int, int], StoreFlow[list[MessageRecord]]]


class SessionVectors:
    """The vectors of one loaded session: an index to score, and those not saved yet."""

    def __init__(self) -> None:
        self.index = VectorIndex()
        self.pending: dict[int, bytes] = {}  # position -> encoded, for the next save
        self.queries: dict[tuple[str, object], Any] = {}  # the last few queries' vectors
        self.sketches = Sketches()
        self.unverified: dict[int, int] = {}  # position -> check of a vector read unchecked
        self.system: dict[int, bool] = {}  # position -> a system message? (of messages seen)

    def clear(self) -> None:
        """The log was replaced or deleted: positions mean other messages now."""
        self.index.clear()
        self.pending.clear()
        self.queries.clear()
        self.sketches.clear()
        self.unverified.clear()
        self.system.clear()

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
            self.sketches.drop(range(stored, stored + appended))
            for position in range(stored, stored + appended):
                self.system.pop(position, None)

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
                    record = span[position - lo] if position - lo < len(span) else None
                    found = _stored_row(codec, session_id, data, record)
                    if found is None:
                        continue
                    row, check = found
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
            codec,
            lambda p: span[p - start],
            missing,
            query if query_vector is None else None,
            embed,
        )
        if fresh is not None:
            query_vector = fresh
            self._remember(query, embed, fresh)
        if query_vector is not None and index.dims is not None and len(query_vector) != index.dims:
            # another model: every vector in the span is computed again with this one
            index.clear()
            index.read_from, index.read_to = start, min(stop, stored)
            self._embed(codec, lambda p: span[p - start], list(range(start, stop)), None, embed)
        return index.scores(query_vector, start, stop)

    def ranked(
        self,
        session_id: str,
        codec: Codec,
        records: Records,
        stored: int,
        start: int,
        stop: int,
        query: str,
        embed: Embed | Batched,
        want: int,
    ) -> StoreFlow[Ranked | None]:
        """Exact similarity to `query` of the `want` (CANDIDATES at least) messages of [start,
        stop) that look best by sketch, and of every message it read or embedded; None when
        `embed` is another model than the stored vectors' (the caller then scores it all)."""
        index, sk = self.index, self.sketches
        saved = min(stop, stored)
        blocks = range(start // BLOCK, (saved - 1) // BLOCK + 1) if saved > start else range(0)
        unread = [b for b in blocks if b not in sk.blocks_read]
        if unread:
            raw = yield from ask(
                ReadVectors(session_id, block_key(unread[-1]), block_key(unread[0]) + 1)
            )
            for key, data in raw.items():
                sk.add_block(-1 - key, *codec.decode_sketch(session_id, data))
            sk.blocks_read.update(unread)
        # positions no block covers: read as vectors, checked against their messages
        uncovered = [
            p
            for b in blocks
            if not sk.full(b)
            for p in range(max(b * BLOCK, start), min(b * BLOCK + BLOCK, saved))
            if p not in sk
        ]
        uncovered += sorted(p for p in sk.dropped if start <= p < saved and sk.full(p // BLOCK))
        texts: dict[int, MessageRecord] = {}  # records read here, by position
        for lo, hi in _runs(uncovered):
            span = yield from records(lo, hi)
            texts.update(zip(range(lo, hi), span, strict=False))
        unread_vectors = [p for p in uncovered if p not in index]
        if unread_vectors:
            raw = yield from ask(ReadVectorsAt(session_id, tuple(unread_vectors)))
            rows = []
            for position in unread_vectors:
                stored_vector = raw.get(position)
                record = texts.get(position)
                if stored_vector is None or record is None:
                    continue
                found = _stored_row(codec, session_id, stored_vector, record)
                if found is not None:
                    rows.append((position, *found))
            index.add_stored(rows)
        if stop > stored:
            texts.update(zip(range(stored, stop), (yield from records(stored, stop)), strict=False))
        query_vector = None
        known = index.by_check.get(text_check(query))
        if known is not None and known in index and start <= known < stop:
            record = texts.get(known)
            if record is None:
                record = (yield from records(known, known + 1))[0]
            if message_text(record.message) == query:
                query_vector = index.vector(known)
        if query_vector is None:
            query_vector = self._asked(query, embed)
        missing = [p for p in texts if p not in index and p not in sk]
        fresh = self._embed(
            codec, texts.__getitem__, missing, query if query_vector is None else None, embed
        )
        if fresh is not None:
            query_vector = fresh
            self._remember(query, embed, fresh)
        dims = len(query_vector)
        if (index.dims is not None and index.dims != dims) or (
            sk.dims is not None and sk.dims != dims
        ):  # another model: score it all this time, and make new blocks from the next call on
            sk.outdated = sk.dims if sk.dims != dims else None
            index.clear()
            sk.clear()
            return None
        # the best by sketch, scored exactly from their vectors
        unit = index.unit(query_vector)
        best = sk.best(unit, start, stop, max(want, CANDIDATES), _Skip(index, sk))
        if best:
            raw = yield from ask(ReadVectorsAt(session_id, tuple(best)))
            rows = []
            for position, data in raw.items():
                row, check = codec.decode_vector(session_id, data)
                rows.append((position, row, check))
                if check is not None:
                    self.unverified[position] = check
            index.add_stored(rows)
        # blocks all saved and all known now: their sketches, to go with the next save
        for position, record in texts.items():
            self.system[position] = (record.kind or record.classify()).system
        ready = {p // BLOCK for p in texts if p < stored} | sk.dirty
        new = []
        for block in sorted(ready):
            if (block + 1) * BLOCK > stored:
                continue
            need = [p for p in range(max(block * BLOCK, start), (block + 1) * BLOCK) if p not in sk]
            if all(p in index and p in self.system for p in need):
                new += need
            else:
                sk.dirty.add(block)  # another call may know the rest
        for position, bits in zip(new, sketches([index.vector(p) for p in new]), strict=True):
            sk.add(position, bits, self.system[position], dims)
        for block in sorted({p // BLOCK for p in new} | (ready & sk.dirty)):
            if (block + 1) * BLOCK <= stored:
                body = sk.block(block, start)
                if body is not None:
                    self.pending[block_key(block)] = codec.seal(body)
        checks = {p: c for p, c in self.unverified.items() if start <= p < stop}
        system = sorted(p for p in sk.system if start <= p < stop)
        return Ranked(index.scores_at(query_vector, start, stop), system, checks)

    def verified(self, position: int, record: MessageRecord) -> bool:
        """Whether the vector read for `position` was made from this message's text; one that
        was not is forgotten (the message is then embedded again)."""
        check = self.unverified.pop(position, None)
        if check is None or check == text_check(message_text(record.message)):
            return True
        self.index.drop([position])
        self.sketches.drop([position])
        return False

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
        record: Callable[[int], MessageRecord],
        positions: list[int],
        query: str | None,
        embed: Embed | Batched,
    ) -> Vector | None:
        """Embed the messages at `positions` (and the query, if given) in one batch; keep each
        message's vector in the index and pending. Returns the query's vector."""
        texts = [message_text(record(p).message) for p in positions]
        if query is None and not texts:
            return None
        vectors = embed_many(embed, texts if query is None else [*texts, query])
        for position, text, vector in zip(positions, texts, vectors, strict=False):
            check = text_check(text)
            if self.index.add(position, vector, check):
                self.pending[position] = codec.encode_vector(vector, check)
        return None if query is None else vectors[-1]


def _stored_row(
    codec: Codec, session_id: str, data: bytes, record: MessageRecord | None
) -> tuple[array[float], int | None] | None:
    """A stored vector and its text check; None when it was written for another text than the
    message now at its position (or for a message not read: `record` None)."""
    row, check = codec.decode_vector(session_id, data)
    if check is not None and (record is None or check != text_check(message_text(record.message))):
        return None
    return row, check


def _runs(positions: list[int]) -> list[tuple[int, int]]:
    """Sorted positions as [lo, hi) ranges of consecutive ones."""
    runs: list[tuple[int, int]] = []
    for p in positions:
        if runs and runs[-1][1] == p:
            runs[-1] = (runs[-1][0], p + 1)
        else:
            runs.append((p, p + 1))
    return runs


class _Skip:
    """Positions a sketch ranking leaves out: held exactly already, or system messages."""

    def __init__(self, index: VectorIndex, sk: Sketches) -> None:
        self.index, self.sk = index, sk

    def __contains__(self, position: object) -> bool:
        return position in self.index.rows or position in self.sk.system

    def __iter__(self) -> Any:
        yield from self.index.rows
        yield from self.sk.system

    def __bool__(self) -> bool:
        return bool(self.index.rows) or bool(self.sk.system)
