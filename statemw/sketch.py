"""Sketches: what lets semantic selection over a long session read a little, not every vector.

A sketch is one bit per dimension of a fixed rotation of a message's unit vector (the signs of
a randomized Hadamard transform, padded to a power of two: 512 bits, 64 bytes, for a 384-dim
vector, a 24th of its float32 record). A session's sketches are kept 64 positions to a record
(a *block*), stored with its vectors under position -1 - block (backends/base.py), sealed like
them, with one bit per position saying whether that message is a system message (the window
keeps those, wherever they are).

Selection over a long span then reads the blocks (about 4 KB per 64 messages), estimates every
message's similarity from them, and reads the vectors of the best CANDIDATES only, which it
scores exactly; the rest count as unscored. Estimates: the rotated query against the sign bits
(asymmetric: the query is not quantized), after a Hamming-distance pass that keeps the best
PREFILTER when there are more. The trade-off (recall against vectors read) is measured by
bench/semantic.py and described in docs/context.md.

A block is written once, by the first selection that sees all its positions (from its own
messages' vectors or from their sketches) after they were saved, so adding a message costs no
block write; the newest, unfinished block's positions are read as vectors, as are positions a
block does not cover. The rotation is fixed (its signs come from SHAKE-128 of a constant), so
every process, with numpy or without, computes the same bits.

One module, past 400 lines, because the sketch, its block format and the candidate ranking over
it are one idea (with and without numpy), measured as one by bench/semantic.py.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import math
import struct
from collections.abc import Iterable, Sequence
from typing import Any

from statemw import _numpy

BLOCK = 64
"""Positions per block record."""
CANDIDATES = 64
"""Messages a sketch-ranked selection scores exactly (their vectors are read), at least."""
PREFILTER = 2048
"""Past this many sketches, a Hamming-distance pass keeps this many for the finer estimate."""
ROUNDS = 3
"""Sign flips + Hadamard transforms in the rotation."""

MARK = 0xC1
SKETCH = 0x02
"""Body kind of a block (vectors.py: 0x01 is a packed vector)."""
_HEAD = struct.Struct("<BBHQQ")  # mark, kind, dims, present bits, system bits


_FULL = (1 << BLOCK) - 1
_ALL = list(range(BLOCK))


def block_key(block: int) -> int:
    """The vector position a block is stored under."""
    return -1 - block


def width(dims: int) -> int:
    """Bits of a sketch of a `dims`-dimension vector: the next power of two (8 at least)."""
    return 1 << max(3, (dims - 1).bit_length())


_signs: dict[int, Any] = {}


def _signs_for(bits: int, numpy: bool) -> Any:
    """ROUNDS rows of `bits` signs (+1.0 / -1.0): numpy array or lists."""
    key = bits if numpy else -bits
    found = _signs.get(key)
    if found is None:
        raw = hashlib.shake_128(b"statemw sketch rotation").digest(ROUNDS * bits // 8)
        flat = [1.0 if raw[i >> 3] >> (i & 7) & 1 else -1.0 for i in range(ROUNDS * bits)]
        rows = [flat[r * bits : (r + 1) * bits] for r in range(ROUNDS)]
        if numpy:
            np = _numpy.load()
            found = np.asarray(rows, dtype=np.float32)
        else:
            found = rows
        _signs[key] = found
    return found


def _hadamard_numpy(x: Any) -> Any:
    np = _numpy.load()
    n = x.shape[-1]
    h = 1
    while h < n:
        x = x.reshape(-1, n // (2 * h), 2, h)
        a, b = x[:, :, 0, :], x[:, :, 1, :]
        x = np.stack([a + b, a - b], 2).reshape(-1, n)
        h *= 2
    return x


_rotations: dict[int, Any] = {}


def rotation(dims: int) -> Any:
    """The rotation as a (dims, width) float32 matrix: the transforms applied to the identity,
    once per dims."""
    found = _rotations.get(dims)
    if found is None:
        np = _numpy.load()
        bits = width(dims)
        x = np.zeros((dims, bits), dtype=np.float32)
        x[:, :dims] = np.eye(dims, dtype=np.float32)
        scale = np.float32(1.0 / math.sqrt(bits))
        for signs in _signs_for(bits, True):
            x = _hadamard_numpy(x * signs) * scale
        found = _rotations[dims] = x
    return found


def rotate_numpy(units: Any) -> Any:
    """Rows (n, dims) of unit vectors, rotated: (n, width) float32."""
    np = _numpy.load()
    units = np.asarray(units, dtype=np.float32).reshape(len(units), -1)
    return units @ rotation(units.shape[1])


def rotate_one(unit: Sequence[float]) -> Any:
    """One unit vector, rotated (numpy: a matrix-vector product, which BLAS does not spread
    over threads that a loaded machine may not schedule)."""
    np = _numpy.load()
    vector = np.asarray(unit, dtype=np.float32).reshape(-1)
    return _transposed(len(vector)) @ vector


def _transposed(dims: int) -> Any:
    found = _rotations.get(-dims)
    if found is None:
        np = _numpy.load()
        found = _rotations[-dims] = np.ascontiguousarray(rotation(dims).T)
    return found


def rotate_python(unit: Sequence[float]) -> list[float]:
    """One unit vector, rotated (pure Python)."""
    bits = width(len(unit))
    x = [float(v) for v in unit] + [0.0] * (bits - len(unit))
    scale = 1.0 / math.sqrt(bits)
    for signs in _signs_for(bits, False):
        x = [v * s for v, s in zip(x, signs, strict=True)]
        h = 1
        while h < bits:
            for i in range(0, bits, 2 * h):
                for j in range(i, i + h):
                    a, b = x[j], x[j + h]
                    x[j], x[j + h] = a + b, a - b
            h *= 2
        x = [v * scale for v in x]
    return x


def sketches(units: Sequence[Any]) -> list[bytes]:
    """The sketch of each unit row (array('f') or numpy rows of one length)."""
    if not units:
        return []
    if _numpy.AVAILABLE:
        np = _numpy.load()
        if len(units) > 256:
            rotated = rotate_numpy(np.asarray([np.asarray(u, dtype=np.float32) for u in units]))
        else:  # few: one matrix-vector product each
            rotated = np.asarray([rotate_one(u) for u in units])
        packed = np.packbits(rotated > 0, axis=1, bitorder="little")
        return [row.tobytes() for row in packed]
    out = []
    for unit in units:
        rotated = rotate_python(unit)
        value = sum(1 << i for i, v in enumerate(rotated) if v > 0)
        out.append(value.to_bytes(len(rotated) // 8, "little"))
    return out


def pack_block(dims: int, rows: dict[int, bytes], system: Iterable[int]) -> bytes:
    """A block's body: slot -> sketch (slots 0..63), and the system slots."""
    present = sum(1 << slot for slot in rows)
    flags = sum(1 << slot for slot in system)
    return _HEAD.pack(MARK, SKETCH, dims, present, flags) + b"".join(
        rows[slot] for slot in sorted(rows)
    )


def unpack_block(body: bytes) -> tuple[int, int, int, bytes] | None:
    """(dims, present slots, system slots, the present slots' sketches in slot order) of a
    block body (slot sets as 64-bit masks); None when it is not one. ValueError when
    malformed."""
    if len(body) < 2 or body[0] != MARK or body[1] != SKETCH:
        return None
    if len(body) < _HEAD.size:
        raise ValueError("short sketch block")
    _, _, dims, present, flags = _HEAD.unpack_from(body)
    if not dims or len(body) != _HEAD.size + width(dims) // 8 * present.bit_count():
        raise ValueError("bad sketch block")
    return dims, present, flags, body[_HEAD.size :]


def _slots(mask: int) -> list[int]:
    return _ALL if mask == _FULL else [s for s in range(BLOCK) if mask >> s & 1]


class Sketches:
    """A session's sketches: the stored blocks as read (one bytes object each), and the ones
    it computed; which positions are system messages."""

    def __init__(self) -> None:
        self.outdated: int | None = None  # blocks of these dims are another model's: ignored
        self.clear()

    def clear(self) -> None:
        self.dims: int | None = None
        self.blocks: dict[int, tuple[int, bytes]] = {}  # block -> (present mask, sketches)
        self.extra: dict[int, bytes] = {}  # position -> sketch, computed here
        self.dropped: set[int] = set()  # positions whose stored sketch is not to be used
        self.system: set[int] = set()
        self.blocks_read: set[int] = set()  # blocks whose record was asked for
        self.dirty: set[int] = set()  # blocks with sketches their record lacks
        self._matrix: Any = None  # numpy cache: (positions array, uint8 matrix)

    @property
    def size(self) -> int:
        """Bytes per sketch."""
        return width(self.dims or 8) // 8

    def __contains__(self, position: int) -> bool:
        if position in self.extra:
            return True
        found = self.blocks.get(position // BLOCK)
        return (
            found is not None
            and found[0] >> (position % BLOCK) & 1 == 1
            and position not in self.dropped
        )

    def full(self, block: int) -> bool:
        """Whether the stored record of `block` holds all its positions."""
        found = self.blocks.get(block)
        return found is not None and found[0] == _FULL

    def row(self, position: int) -> bytes:
        found = self.extra.get(position)
        if found is not None:
            return found
        mask, data = self.blocks[position // BLOCK]
        slot = position % BLOCK
        at = (mask & ((1 << slot) - 1)).bit_count() * self.size
        return data[at : at + self.size]

    def add_block(self, block: int, dims: int, present: int, system: int, data: bytes) -> None:
        if (self.dims is not None and dims != self.dims) or dims == self.outdated:
            return  # another model's: its positions count as unsketched
        self.dims = dims
        self.blocks[block] = (present, data)
        if system:
            self.system.update(block * BLOCK + slot for slot in _slots(system))
        self._matrix = None

    def add(self, position: int, row: bytes, system: bool, dims: int) -> None:
        if self.dims is not None and dims != self.dims:
            self.clear()
        self.dims = dims
        self.extra[position] = row
        self.dropped.discard(position)
        self.dirty.add(position // BLOCK)
        if system:
            self.system.add(position)
        else:
            self.system.discard(position)
        self._matrix = None

    def drop(self, positions: Iterable[int]) -> None:
        for position in positions:
            self.extra.pop(position, None)
            self.dropped.add(position)
            self.system.discard(position)
        self._matrix = None

    def block(self, block: int, start: int) -> bytes | None:
        """The body of `block` if every position of it from `start` on is sketched and its
        stored record lacks some; else None."""
        assert self.dims is not None
        base = block * BLOCK
        wanted = range(max(base, start), base + BLOCK)
        if not all(p in self for p in wanted):
            return None
        self.dirty.discard(block)
        stored = self.blocks.get(block)
        if stored is not None and all(
            stored[0] >> (p - base) & 1 and p not in self.extra and p not in self.dropped
            for p in wanted
        ):
            return None
        slots = {p - base: self.row(p) for p in wanted}
        system = [p - base for p in wanted if p in self.system]
        body = pack_block(self.dims, slots, system)
        self.blocks[block] = (
            sum(1 << slot for slot in slots),
            b"".join(slots[s] for s in sorted(slots)),
        )
        for p in wanted:
            self.extra.pop(p, None)
            self.dropped.discard(p)
        self._matrix = None
        return body

    def positions(self) -> list[int]:
        """Every sketched position."""
        out = [
            block * BLOCK + slot
            for block, (mask, _) in self.blocks.items()
            for slot in _slots(mask)
            if block * BLOCK + slot not in self.dropped and block * BLOCK + slot not in self.extra
        ]
        return out + list(self.extra)

    def best(self, query: Sequence[float], start: int, stop: int, n: int, skip: Any) -> list[int]:
        """The `n` positions in [start, stop) whose sketches look most like the unit `query`,
        best first; positions in `skip` are left out."""
        if _numpy.AVAILABLE:
            return self._best_numpy(query, start, stop, n, skip)
        positions = [p for p in self.positions() if start <= p < stop and p not in skip]
        if len(positions) <= n:
            return positions
        return self._best_python(query, positions, n)

    def _all(self) -> tuple[Any, Any]:
        """Every sketch as one matrix (positions, uint8 rows), kept until a sketch changes."""
        if self._matrix is None:
            np = _numpy.load()
            full = [b for b, (mask, _) in self.blocks.items() if mask == _FULL]
            part = [b for b, (mask, _) in self.blocks.items() if mask != _FULL]
            pos = [
                (np.asarray(full, dtype=np.int64)[:, None] * BLOCK + _slot_range()).reshape(-1),
                np.asarray(
                    [b * BLOCK + s for b in part for s in _slots(self.blocks[b][0])],
                    dtype=np.int64,
                ),
                np.asarray(list(self.extra), dtype=np.int64),
            ]
            data = b"".join(
                [self.blocks[b][1] for b in full]
                + [self.blocks[b][1] for b in part]
                + list(self.extra.values())
            )
            positions = np.concatenate(pos)
            matrix = np.frombuffer(data, dtype=np.uint8).reshape(len(positions), self.size)
            hidden = self.dropped | set(self.extra)
            if hidden:
                keep = ~np.isin(positions, np.fromiter(hidden, dtype=np.int64))
                keep[len(positions) - len(self.extra) :] = True
                positions, matrix = positions[keep], matrix[keep]
            self._matrix = positions, matrix
        return self._matrix  # type: ignore[no-any-return]

    def _best_numpy(
        self, query: Sequence[float], start: int, stop: int, n: int, skip: Any
    ) -> list[int]:
        np = _numpy.load()
        pos, matrix = self._all()
        inside = (pos >= start) & (pos < stop)
        if skip:
            inside &= ~np.isin(pos, np.fromiter(skip, dtype=np.int64))
        if not inside.all():
            pos, matrix = pos[inside], matrix[inside]
        if len(pos) <= n:
            return [int(p) for p in pos]
        rotated = rotate_one(query)
        if len(pos) > PREFILTER:  # Hamming distance to the query's signs first
            signs = np.packbits(rotated > 0, bitorder="little")
            words = matrix.shape[1] // 8
            if words:
                wide = np.ascontiguousarray(matrix[:, : words * 8]).view(np.uint64)
                distance = np.bitwise_count(wide ^ signs[: words * 8].view(np.uint64)).sum(1)
            else:
                distance = np.bitwise_count(matrix ^ signs).sum(1)
            keep = np.argpartition(distance, PREFILTER)[:PREFILTER]
            matrix, pos = matrix[keep], pos[keep]
        # sum over set bits of the rotated query: one table of 256 sums per byte
        table = _byte_bits() @ rotated.reshape(-1, 8).T  # (256, bytes)
        estimate = np.zeros(len(pos), dtype=np.float32)
        for j in range(matrix.shape[1]):
            estimate += table[matrix[:, j], j]
        top = np.argpartition(-estimate, n)[:n]
        top = top[np.argsort(-estimate[top], kind="stable")]
        return [int(p) for p in pos[top]]

    def _best_python(self, query: Sequence[float], positions: list[int], n: int) -> list[int]:
        rotated = rotate_python(query)
        rows = {p: self.row(p) for p in positions}
        if len(positions) > PREFILTER:
            signs = sum(1 << i for i, v in enumerate(rotated) if v > 0)
            ints = {p: int.from_bytes(rows[p], "little") for p in positions}
            positions = heapq.nsmallest(
                PREFILTER, positions, key=lambda p: (ints[p] ^ signs).bit_count()
            )
        tables = [
            [sum(rotated[8 * j + i] for i in range(8) if b >> i & 1) for b in range(256)]
            for j in range(len(rotated) // 8)
        ]

        def estimate(p: int) -> float:
            return sum(t[b] for t, b in zip(tables, rows[p], strict=True))

        return heapq.nlargest(n, positions, key=estimate)


@functools.cache
def _slot_range() -> Any:
    """Slots 0..BLOCK-1 as an int64 array (built on first use, as numpy is)."""
    np = _numpy.load()
    return np.arange(BLOCK, dtype=np.int64)


@functools.cache
def _byte_bits() -> Any:
    """Each byte value's 8 bits, low first, as a (256, 8) float32 matrix (built on first use)."""
    np = _numpy.load()
    bits = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder="little")
    return bits.astype(np.float32)
