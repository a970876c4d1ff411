"""Embedding vectors: stored small, read once per loaded session, scored fast.

Stored form: the codec's body (after its format byte, sealed when encryption is on) is

    0xc1  0x01  <crc32 of the message's text: 4 bytes>  <float32 little-endian, one per dimension>

0xc1 is the one byte msgpack never uses, so this cannot be mistaken for the msgpack list of
floats that statemw wrote before; those still read (with no check: trusted, as they were). A
384-dimension vector's body is 1,542 bytes; stored, with the codec's format byte, 1,543 (1,579
sealed), instead of about 3,460.

The check ties a vector to the text it was computed from: a vector that lands on another
message's position (a concurrent save appended first, or the log was replaced elsewhere) is
seen as missing when read, and computed again.

Scoring uses numpy when it is installed (`pip install 'statemw[semantic]'`; imported on first
use, statemw/_numpy.py): one matrix product over unit vectors kept in one float32 matrix per
session. Without it, rows are `array('f')` and the products plain Python (math.sumprod on 3.12+).
"""

from __future__ import annotations

import math
import operator
import struct
import sys
import zlib
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from statemw import _numpy

MARK = 0xC1
"""First byte of a packed vector body: never the first byte of msgpack."""
F32 = 0x01
"""Packed float32, little-endian, after a 4-byte text check."""
_HEAD = struct.Struct("<BBI")
_LITTLE = sys.byteorder == "little"

Vector = Any
"""What an embedding function returns for one text: a list of floats, a numpy array, a tuple."""
Embed = Callable[[str], Vector]


def text_check(text: str) -> int:
    """The check stored with a vector: crc32 of the text it was computed from."""
    return zlib.crc32(text.encode("utf-8", "surrogatepass"))


def pack_vector(vector: Vector, check: int) -> bytes:
    """The stored body of a vector: its unit vector (all cosine needs), as float32."""
    if _numpy.AVAILABLE:
        data: bytes = unit_numpy(vector).astype("<f4").tobytes()
    else:
        floats = unit_python(vector)
        if not _LITTLE:  # pragma: no cover - big-endian hosts
            floats.byteswap()
        data = floats.tobytes()
    return _HEAD.pack(MARK, F32, check) + data


def unit_numpy(vector: Vector) -> Any:
    """`vector` scaled to length 1 (zero stays zero) as a flat float32 numpy array."""
    np = _numpy.load()
    wide = np.asarray(vector, dtype=np.float64).reshape(-1)  # no float32 underflow
    norm = math.sqrt(float(np.dot(wide, wide)))
    return (wide / norm if norm else wide).astype(np.float32)


def unit_python(vector: Vector) -> array[float]:
    """`vector` scaled to length 1 (zero stays zero) as array('f')."""
    floats = [float(x) for x in vector]
    norm = math.sqrt(_dot(floats, floats))
    return array("f", [x / norm for x in floats] if norm else floats)


def unpack_vector(body: bytes) -> tuple[array[float], int | None] | None:
    """(float32 row, text check) from a stored body; None when it is not a packed vector (the
    caller then reads it as a msgpack list, the earlier form). ValueError when malformed."""
    if not body or body[0] != MARK:
        return None
    if len(body) < _HEAD.size or body[1] != F32 or (len(body) - _HEAD.size) % 4:
        raise ValueError("not a float32 vector of a known version")
    _, _, check = _HEAD.unpack_from(body)
    row = array("f")
    row.frombytes(body[_HEAD.size :])
    if not _LITTLE:  # pragma: no cover - big-endian hosts
        row.byteswap()
    return row, check


@dataclass(frozen=True, slots=True)
class Batched:
    """An embedding function that takes a list of texts and returns a vector for each (what
    `sentence_transformers.SentenceTransformer.encode` does with a list): statemw then embeds a
    backlog in one call. Make one with `statemw.batched(fn)`."""

    fn: Callable[[list[str]], Iterable[Vector]]

    def many(self, texts: list[str]) -> list[Vector]:
        out = list(self.fn(texts))
        if len(out) != len(texts):
            raise ValueError(f"a batched embed returned {len(out)} vectors for {len(texts)} texts")
        return out


def batched(fn: Callable[[list[str]], Iterable[Vector]]) -> Batched:
    """Mark `fn(texts) -> vectors` as batched: `get_history(embed=batched(model.encode), ...)`."""
    return Batched(fn)


def embed_many(embed: Embed | Batched, texts: list[str]) -> list[Vector]:
    """Vectors of `texts`, one call when `embed` is batched (each distinct text once)."""
    if not texts:
        return []
    distinct = list(dict.fromkeys(texts))
    many = embed.many if isinstance(embed, Batched) else lambda ts: [embed(t) for t in ts]
    vectors = many(distinct)
    by_text = dict(zip(distinct, vectors, strict=True))
    return [by_text[t] for t in texts]


_sumprod: Callable[[Sequence[float], Sequence[float]], float] | None = getattr(
    math, "sumprod", None
)


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    if _sumprod is not None:  # pragma: no cover - Python 3.12+
        return _sumprod(a, b)
    total: float = sum(map(operator.mul, a, b))
    return total


class VectorIndex:
    """A session's message vectors by position, as unit rows ready to score.

    With numpy: one float32 matrix grown by doubling, scored by one matrix-vector product.
    Without: a list of `array('f')` rows. Each row also keeps its text check."""

    def __init__(self, *, use_numpy: bool | None = None) -> None:
        self.numpy = _numpy.AVAILABLE if use_numpy is None else use_numpy
        self.clear()

    def clear(self) -> None:
        """Forget every vector."""
        self.dims: int | None = None
        self.rows: dict[int, int] = {}  # position -> row
        self.checks: dict[int, int] = {}  # position -> text check, where known
        self.by_check: dict[int, int] = {}  # text check -> a position with that text
        self._positions: list[int] = []  # row -> position
        self._matrix: Any = None  # numpy (capacity, dims) float32
        self._pos: Any = None  # numpy (capacity,) int64: row -> position, -1 when dropped
        self._list: list[array[float]] = []
        self.read_from = self.read_to = 0  # positions whose stored vectors were read

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, position: int) -> bool:
        return position in self.rows

    def unit(self, vector: Vector) -> Any:
        """`vector` as a unit float32 row (numpy array or array('f')); zero stays zero."""
        return unit_numpy(vector) if self.numpy else unit_python(vector)

    def add(self, position: int, vector: Vector, check: int | None, *, unit: bool = False) -> bool:
        """Keep `vector` for `position` (replacing one it had); `unit`: it is a unit float32
        row already (as stored). False, and nothing kept, when its dimensions differ from the
        vectors already here."""
        if not unit:
            row = self.unit(vector)
        elif self.numpy:
            np = _numpy.load()
            row = np.frombuffer(vector, dtype=np.float32) if isinstance(vector, array) else vector
        else:
            row = vector
        dims = len(row)
        if self.dims is None:
            self.dims = dims
        elif dims != self.dims:
            return False
        at = self.rows.get(position)
        if at is None:
            at = len(self._positions)
            self.rows[position] = at
            self._positions.append(position)
            if self.numpy:
                self._grow(at + 1)
            else:
                self._list.append(row)
        elif not self.numpy:
            self._list[at] = row
        if self.numpy:
            self._matrix[at] = row
            self._pos[at] = position
        if check is None:
            self.checks.pop(position, None)
        else:
            self.checks[position] = check
            self.by_check[check] = position
        return True

    def add_stored(self, entries: list[tuple[int, array[float], int | None]]) -> None:
        """Keep stored rows, (position, unit float32 row, check) each: with numpy, as one
        block (a row of other dimensions than the rest is left out)."""
        if not entries:
            return
        if not self.numpy or len(entries) < 8:
            for position, row, check in entries:
                self.add(position, row, check, unit=True)
            return
        np = _numpy.load()
        dims = self.dims if self.dims is not None else len(entries[0][1])
        entries = [e for e in entries if len(e[1]) == dims]
        block = np.frombuffer(b"".join(row for _, row, _ in entries), dtype=np.float32)
        self.dims = dims
        block = block.reshape(len(entries), dims)
        fresh = [i for i, (position, _, _) in enumerate(entries) if position not in self.rows]
        for i, (position, _, check) in enumerate(entries):
            at = self.rows.get(position)
            if at is not None:  # already held: replace in place
                self._matrix[at] = block[i]
            if check is None:
                self.checks.pop(position, None)
            else:
                self.checks[position] = check
                self.by_check[check] = position
        if not fresh:
            return
        first = len(self._positions)
        self._grow(first + len(fresh))
        self._matrix[first : first + len(fresh)] = block[fresh]
        for at, i in enumerate(fresh, first):
            position = entries[i][0]
            self.rows[position] = at
            self._positions.append(position)
            self._pos[at] = position

    def vector(self, position: int) -> Any:
        """The unit row kept for `position` (KeyError when none)."""
        at = self.rows[position]
        return self._matrix[at] if self.numpy else self._list[at]

    def _grow(self, need: int) -> None:
        np = _numpy.load()
        assert self.dims is not None
        if self._matrix is None:
            self._matrix = np.zeros((max(need, 64), self.dims), dtype=np.float32)
            self._pos = np.full(len(self._matrix), -1, dtype=np.int64)
        elif need > len(self._matrix):
            size = max(need, 2 * len(self._matrix))
            matrix = np.zeros((size, self.dims), dtype=np.float32)
            matrix[: len(self._matrix)] = self._matrix
            pos = np.full(size, -1, dtype=np.int64)
            pos[: len(self._pos)] = self._pos
            self._matrix, self._pos = matrix, pos

    def drop(self, positions: Iterable[int]) -> None:
        """Forget these positions' vectors (their rows stay, unreachable, until clear())."""
        for position in positions:
            at = self.rows.pop(position, None)
            if at is not None:
                check = self.checks.pop(position, None)
                if check is not None and self.by_check.get(check) == position:
                    del self.by_check[check]
                self._positions[at] = -1
                if self.numpy:
                    self._pos[at] = -1

    def scores_at(self, query: Vector, start: int, stop: int) -> dict[int, float]:
        """Cosine similarity to `query` of each message in [start, stop) that has a vector."""
        if not self.rows:
            return {}
        q = self.unit(query)
        if len(q) != self.dims:
            return {}
        if self.numpy:
            np = _numpy.load()
            n = len(self._positions)
            pos = self._pos[:n]
            inside = np.nonzero((pos >= start) & (pos < stop))[0]
            sims = self._matrix[inside] @ q
            return dict(zip(pos[inside].tolist(), sims.tolist(), strict=True))
        return {
            position: _dot(self._list[at], q)
            for at, position in enumerate(self._positions)
            if start <= position < stop
        }

    def scores(self, query: Vector, start: int, stop: int) -> list[float]:
        """Cosine similarity of each message in [start, stop) to `query`; -1.0 where a message
        has no vector."""
        out = [-1.0] * max(stop - start, 0)
        if not self.rows or not out:
            return out
        q = self.unit(query)
        if len(q) != self.dims:
            return out
        if self.numpy:
            np = _numpy.load()
            n = len(self._positions)
            sims = self._matrix[:n] @ q
            pos = self._pos[:n]
            inside = (pos >= start) & (pos < stop)
            scores = np.full(stop - start, -1.0, dtype=np.float64)
            scores[pos[inside] - start] = sims[inside]
            listed: list[float] = scores.tolist()
            return listed
        for at, position in enumerate(self._positions):
            if start <= position < stop:
                out[position - start] = _dot(self._list[at], q)
        return out
