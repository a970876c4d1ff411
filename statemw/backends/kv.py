"""The session layout over a plain key-value store, shared by the memory and diskcache backends.

Keys (sids are statemw ids, so ':' cannot be confused):
    h:<sid>            header (records.SessionHeader, msgpack), with the state while it is small
    s:<sid>:<bucket>   a large state, spread over 2^k buckets by a hash of each key: a save
                       rewrites only the buckets its keys fall in (O(what changed))
    m:<sid>:<chunk>    messages [chunk*CHUNK, (chunk+1)*CHUNK): an append rewrites one small chunk
    w:<sid>:<pos>      the cached vector of the message at <pos>, one record each (a save that
                       adds a vector writes that vector); positions below 0 are the client's
                       own index records (statemw._semantic), at most as many as messages
    x:<sid>:<chunk>    which positions of [chunk*CHUNK, (chunk+1)*CHUNK) have a w: record (a
                       bitmap), so reads, deletes and renames find them without a scan
    v:<sid>:<chunk>    vectors as earlier versions kept them, a chunk's in one record: still
                       read; the first write to a chunk moves them to w: records
    i:<user_id>        the user's session ids, oldest first
User state lives in a header under records.user_record_id(user_id); without an expiry of its own
(Store.user_ttl) it lives as long as one of the user's sessions does. Live changes for
subscribers: local_pubsub.py.

Expired records go by themselves (no purge() needed): the KV keeps a schedule of when each
top-level record may expire, written with the save that creates it, and a save or a load (at most
once a second per process, unless the last sweep found more due) reclaims up to SWEEP_BATCH
records that are due: removed if dead, scheduled again at their current expiry if a later save
extended it. So the work per operation is bounded, and a store that keeps being used keeps no
more expired records than the sweeps have not reached yet.

One module, past 400 lines, because it is one layout: reads, commits, expiry sweeps, vectors and
renames all follow the key scheme above, and a change to it has to be made everywhere at once.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, suppress
from typing import Any, Protocol, TypeVar

from statemw import telemetry
from statemw._assembled import AssembledStates
from statemw._state_parts import PartedState, SharedEntries
from statemw.backends.base import Progress, WouldBlock
from statemw.backends.local_pubsub import LocalSubscription
from statemw.changes import Change
from statemw.codec import decode_header, encode_header, pack, unpack
from statemw.errors import CorruptRecord, SessionNotFound, StoreUnavailable
from statemw.records import (
    USER_PREFIX,
    Committed,
    Delta,
    Entry,
    SessionHeader,
    Snapshot,
    apply_delta,
    entries_of,
    parent_ids,
    user_record_id,
)

T = TypeVar("T")
V = TypeVar("V")

CHUNK = 64
INLINE_KEYS = 64
"""A state of up to this many keys lives in the header; a larger one moves to buckets."""
BUCKET_KEYS = 64
"""Keys a bucket is meant to hold; one that grows past twice this doubles the buckets."""
SWEEP_BATCH = 16
"""Records an operation reclaims at most (when more are due, the next operation goes on)."""
SWEEP_PAUSE = 1.0
"""Seconds (store clock) a process waits to look again after a sweep that found little due."""
SCRUB_PAUSE = 60.0
"""Seconds between scrubs (diskcache: WAL truncation) after automatic reclamation."""
UNPACKED_BYTES = 4 << 20
"""Bytes of message chunks kept unpacked (KVBackend._unpacked)."""
DECODED_HEADER_BYTES = 1 << 20
"""Bytes of headers kept decoded (KVBackend._headers)."""
DECODED_BUCKET_BYTES = 4 << 20
"""Bytes of state buckets kept decoded (KVBackend._buckets)."""
_NO_ENTRIES = SharedEntries()
"""A bucket that is not there (never changed)."""


def bucket_of(key: str, buckets: int) -> int:
    """The bucket a state key lives in (crc32: the same in every process)."""
    return zlib.crc32(key.encode()) & (buckets - 1)


def _bucket_entries(wires: dict[str, Any]) -> SharedEntries:
    """A bucket's entries from what it stores (Entry.to_wire lists, by key)."""
    return SharedEntries(entries_of(wires.items()))


def appended(chunk: bytes, count: int, records: list[bytes]) -> bytes | None:
    """A stored message chunk (a msgpack array of `count` records) with `records` added, by
    rewriting the array's length and adding their bytes: the stored records are neither decoded
    nor encoded again. None when the chunk does not hold exactly `count` records."""
    first = chunk[0] if chunk else 0
    if 0x90 <= first <= 0x9F:
        held, body = first & 0x0F, 1
    elif first == 0xDC and len(chunk) >= 3:
        held, body = int.from_bytes(chunk[1:3], "big"), 3
    elif first == 0xDD and len(chunk) >= 5:
        held, body = int.from_bytes(chunk[1:5], "big"), 5
    else:
        return None
    if held != count:
        return None
    total = count + len(records)
    if total <= 15:
        head = bytes((0x90 | total,))
    elif total <= 0xFFFF:
        head = b"\xdc" + total.to_bytes(2, "big")
    else:
        head = b"\xdd" + total.to_bytes(4, "big")
    return b"".join((head, chunk[body:], *map(pack, records)))


class KeptByKey(dict[str, tuple[bytes, V]]):
    """What was made (unpacked, decoded) from the bytes last read or written under a key, with
    those bytes: a read that finds the same bytes under the key again costs a lookup. The bytes
    are compared whole (identity on memory, a memcmp where every read makes new bytes, as on
    diskcache), never hashed. Checked against the bytes, an entry cannot go stale; a record this
    backend removes is dropped with it, so a deleted session's data does not stay in memory.
    Starts afresh past `budget` bytes. Lock-free: dict reads and writes are atomic, and a lost
    entry costs one decode."""

    __slots__ = ("budget", "held")

    def __init__(self, budget: int) -> None:
        super().__init__()
        self.budget = budget
        self.held = 0

    def keep(self, key: str, data: bytes, value: V) -> None:
        replaced = self.get(key)
        self.held += len(data) - (len(replaced[0]) if replaced is not None else 0)
        if self.held > self.budget:
            self.clear()
            self.held = len(data)
        self[key] = (data, value)

    def made_from(self, key: str, data: bytes) -> V | None:
        """What is kept under `key` if it was made from `data` (the bytes just read), else None."""
        kept = self.get(key)
        return kept[1] if kept is not None and kept[0] == data else None

    def drop(self, key: str) -> None:
        """Forget what is kept under `key` (its record is gone)."""
        dropped = self.pop(key, None)
        if dropped is not None:
            self.held -= len(dropped[0])


class KV(Protocol):
    """The few primitives the layout needs; `transaction()` makes a block atomic and exclusive."""

    def transaction(self) -> AbstractContextManager[None]: ...

    def get(self, key: str) -> bytes | None: ...

    def set(self, key: str, value: bytes) -> None: ...

    def delete(self, key: str) -> None: ...

    def keys(self, prefix: str) -> Iterator[str]: ...

    def schedule(self, record_id: str, at: float) -> None:
        """Note that a record may have expired at `at` (one entry per record suffices)."""

    def take_due(self, now: float, limit: int) -> list[str]:
        """Up to `limit` records scheduled at `now` or before, oldest first, off the schedule."""

    def scrub(self) -> None:
        """Leave no bytes of deleted records in the store's files (where it has files)."""

    def close(self) -> None: ...


class KVBackend:
    """A Backend (see base.py) over any KV; the memory and disk backends are this plus a KV."""

    def __init__(self, kv: KV, *, name: str = "memory", poll_interval: float | None = None) -> None:
        self.kv = kv
        self.name = name  # the backend as telemetry names it
        self.poll_interval = poll_interval
        self._subscribers: dict[str, set[LocalSubscription]] = {}
        self._subscribers_lock = threading.Lock()
        self._next_sweep = float("-inf")
        self._next_scrub = float("-inf")
        # Every turn reads the chunk of messages and the header the turn before wrote. Kept,
        # a read costs a lookup instead of an unpack, and hands out the same record bytes
        # objects, whose hashes Python keeps for the decoded-messages lookup; a commit keeps
        # what it writes. Headers are handed out as copies: a commit changes the one it reads.
        self._unpacked: KeptByKey[list[bytes]] = KeptByKey(UNPACKED_BYTES)
        self._headers: KeptByKey[SessionHeader] = KeptByKey(DECODED_HEADER_BYTES)
        # A large state's load reads every bucket, and a save rewrites only the ones it
        # touches: the others are kept decoded, shared (never changed: readers copy them).
        self._buckets: KeptByKey[SharedEntries] = KeptByKey(DECODED_BUCKET_BYTES)
        self._assembled = AssembledStates()  # a large state's buckets as one union, by header

    # -- reading -------------------------------------------------------------------------------

    def _header(self, session_id: str) -> SessionHeader | None:
        read = self._read_header(session_id)
        return None if read is None else read[0]

    def _read_header(self, session_id: str) -> tuple[SessionHeader, bytes] | None:
        """The stored header, as a copy to change, with the bytes it was read from."""
        key = "h:" + session_id
        data = self.kv.get(key)
        if data is None:
            return None
        known = self._headers.made_from(key, data)
        if known is not None:
            header = known.copy()
        else:
            try:
                header = SessionHeader.from_wire(decode_header(data, session_id=session_id))
            except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
                raise CorruptRecord(session_id, f"bad header ({exc})") from exc
            self._headers.keep(key, data, header.copy())
        if header.session_id != session_id:  # never another session's record
            raise CorruptRecord(session_id, "the header names another session")
        return header, data

    def read_header(self, session_id: str, now: float) -> SessionHeader | None:
        read = self._read_header(session_id)
        if read is None or not read[0].live(now):
            return None
        header, data = read
        if (
            header.expires_at is None
            and session_id.startswith(USER_PREFIX)
            and not self._user_live(session_id[len(USER_PREFIX) :], now)
        ):
            return None  # a user's state without a live session of the user
        return self._with_state(header, data)

    def _user_live(self, user_id: str, now: float) -> bool:
        """Does the user have a live session (what keeps state without its own expiry)?"""
        return any(
            (h := self._header(sid)) is not None and h.live(now)
            for sid in reversed(self._index(user_id))
        )

    def _user_dead(self, header: SessionHeader, now: float) -> bool:
        """A user's record past its own expiry, or without one and without a live session."""
        if header.expires_at is not None:
            return not header.live(now)
        return not self._user_live(header.session_id[len(USER_PREFIX) :], now)

    def _drop_user(self, user_id: str) -> None:
        self._remove(user_record_id(user_id))
        self.kv.delete("i:" + user_id)

    def _with_state(self, header: SessionHeader, data: bytes | None = None) -> SessionHeader:
        """The header with its whole state, gathered from its buckets if it has them: the union
        of the buckets an earlier load found, with the ones changed since over it, so a load
        decodes only those (statemw._state_parts). `data`: the header's bytes as read; while
        they are the ones the last load or commit here saw, that state is the answer, and no
        bucket is read."""
        if header.state_buckets:
            key = "h:" + header.session_id
            known = None if data is None or header.state else self._assembled.known(key, data)
            if known is not None:
                header.state = known
                return header
            buckets = [self._bucket(header.session_id, n) for n in range(header.state_buckets)]
            if header.state:  # inline keys beside buckets: not written by this version
                header.state = PartedState([header.state, *buckets])
            else:
                header.state = self._assembled.state(key, buckets, data)
        return header

    @staticmethod
    def _parse_bucket(session_id: str, n: int, data: bytes, parse: Callable[[Any], T]) -> T:
        """A bucket's entries as stored (Entry.to_wire lists, by key), through `parse`."""
        try:
            return parse(unpack(data))
        except Exception as exc:
            raise CorruptRecord(session_id, f"bad state bucket {n} ({exc})") from exc

    def _bucket(self, session_id: str, n: int) -> SharedEntries:
        """A bucket's entries, decoded; kept and shared, so a caller must not change it."""
        key = f"s:{session_id}:{n}"
        data = self.kv.get(key)
        if data is None:
            return _NO_ENTRIES
        entries = self._buckets.made_from(key, data)
        if entries is None:
            entries = self._parse_bucket(session_id, n, data, _bucket_entries)
            self._buckets.keep(key, data, entries)
        return entries

    def _live_wires(self, session_id: str, n: int, now: float) -> dict[str, list[Any]]:
        """A bucket's unexpired entries as stored, not decoded."""
        data = self.kv.get(f"s:{session_id}:{n}")
        if data is None:
            return {}
        return self._parse_bucket(
            session_id,
            n,
            data,
            lambda wires: {k: w for k, w in wires.items() if w[2] is None or w[2] > now},
        )

    def _put_bucket(self, session_id: str, n: int, entries: dict[str, Entry]) -> None:
        self._put_wires(session_id, n, {k: e.to_wire() for k, e in entries.items()})

    def _put_wires(self, session_id: str, n: int, wires: dict[str, list[Any]]) -> bytes | None:
        """Write a bucket's entries as stored; the bytes written (None: none, so removed)."""
        key = f"s:{session_id}:{n}"
        if not wires:
            self._delete_kept(key)
            return None
        data = pack(wires)
        self.kv.set(key, data)
        return data

    def _put_merged(self, session_id: str, n: int, wires: dict[str, list[Any]]) -> SharedEntries:
        """A bucket a commit merged, written, and kept decoded as the next load will want it."""
        data = self._put_wires(session_id, n, wires)
        if data is None:
            return _NO_ENTRIES
        entries = _bucket_entries(wires)
        self._buckets.keep(f"s:{session_id}:{n}", data, entries)
        return entries

    def _chunk(self, session_id: str, kind: str, n: int) -> Any:
        key = f"{kind}:{session_id}:{n}"
        data = self.kv.get(key)
        if data is None:
            return [] if kind == "m" else {}
        if kind == "m":
            records = self._unpacked.made_from(key, data)
            if records is not None:
                return records
            records = self._parse_chunk(session_id, kind, n, data)
            self._unpacked.keep(key, data, records)
            return records
        return self._parse_chunk(session_id, kind, n, data)

    @staticmethod
    def _parse_chunk(session_id: str, kind: str, n: int, data: bytes) -> Any:
        try:
            chunk = unpack(data)
        except Exception as exc:
            raise CorruptRecord(session_id, f"bad message chunk {n} ({exc})") from exc
        if kind == "m":  # (a record that is not bytes fails to decode, as CorruptRecord)
            if type(chunk) is not list:
                raise CorruptRecord(session_id, f"bad message chunk {n} (not a list of records)")
        elif type(chunk) is not dict or not all(
            type(p) is int and type(v) is bytes for p, v in chunk.items()
        ):
            raise CorruptRecord(session_id, f"bad vector chunk {n}")
        return chunk

    def _messages(self, session_id: str, start: int, stop: int) -> list[bytes]:
        out: list[bytes] = []
        for n in range(start // CHUNK, (stop - 1) // CHUNK + 1 if stop > start else 0):
            chunk: list[bytes] = self._chunk(session_id, "m", n)
            lo = max(start - n * CHUNK, 0)
            hi = min(stop - n * CHUNK, CHUNK)
            out.extend(chunk[lo:hi])
        if len(out) < stop - start:  # the header counts messages the chunks do not hold
            raise CorruptRecord(session_id, f"messages [{start}, {stop}) are missing")
        return out

    def read_messages(self, session_id: str, start: int, stop: int) -> list[bytes]:
        header = self._header(session_id)
        if header is None:
            return []
        stop = min(stop, header.message_count)
        return self._messages(session_id, max(start, 0), stop)

    def read_vectors(self, session_id: str, start: int, stop: int) -> dict[int, bytes]:
        return self.read_vectors_at(session_id, range(start, stop))

    def read_vectors_at(self, session_id: str, positions: Sequence[int]) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        wanted: dict[int, list[int]] = {}
        for position in positions:
            wanted.setdefault(position // CHUNK, []).append(position)
        for n, in_chunk in wanted.items():
            present = self._present(session_id, n)
            if present is None:  # kept as an earlier version did, if at all
                chunk: dict[int, bytes] = self._chunk(session_id, "v", n)
                out.update((p, chunk[p]) for p in in_chunk if p in chunk)
                continue
            for position in in_chunk:
                if present >> (position - n * CHUNK) & 1:
                    data = self.kv.get(f"w:{session_id}:{position}")
                    if data is not None:
                        out[position] = data
        return out

    def _present(self, session_id: str, n: int) -> int | None:
        """The bitmap of chunk n's positions that have a w: record; None: the chunk has none
        written by this version."""
        data = self.kv.get(f"x:{session_id}:{n}")
        if data is None:
            return None
        if len(data) != 8:
            raise CorruptRecord(session_id, f"bad vector bitmap {n}")
        return int.from_bytes(data, "little")

    def load(self, session_id: str, window: int, now: float) -> Snapshot | None:
        if now >= self._next_sweep:
            self.reclaim(now)
        header = self.read_header(session_id, now)
        if header is None:
            return None
        count = header.message_count
        start = header.window_start(window)
        lead = min(header.lead or 0, start)
        if lead and start // CHUNK == 0:  # one chunk holds both: read it once
            messages = self._messages(session_id, 0, count)
            lead_messages, messages = messages[:lead], messages[start:]
        else:
            messages = self._messages(session_id, start, count)
            lead_messages = self._messages(session_id, 0, lead) if lead else []
        parents = [self._with_state(h) for h in map(self._header, parent_ids(session_id)) if h]
        user = self._header(user_record_id(header.user_id)) if header.user_id else None
        if user is not None:
            self._with_state(user)
        return Snapshot(header, start, messages, parents, user, lead_messages)

    # -- writing -------------------------------------------------------------------------------

    def _put_header(self, header: SessionHeader) -> bytes:
        key, data = "h:" + header.session_id, encode_header(header.to_wire())
        self.kv.set(key, data)
        self._headers.keep(key, data, header.copy())
        return data

    def _delete_kept(self, key: str) -> None:
        """Delete a record and whatever this backend keeps of it (a message chunk unpacked, a
        header or a state bucket decoded; nothing for other records): a deleted session's data
        does not stay in memory."""
        self.kv.delete(key)
        self._unpacked.drop(key)
        self._headers.drop(key)
        self._buckets.drop(key)
        self._assembled.drop(key)

    def _drop_log(self, session_id: str, count: int) -> None:
        for n in range((count + CHUNK - 1) // CHUNK):
            self._delete_kept(f"m:{session_id}:{n}")
        self._drop_vectors(session_id, count)

    def _drop_buckets(self, header: SessionHeader) -> None:
        for n in range(header.state_buckets):
            self._delete_kept(f"s:{header.session_id}:{n}")

    def _merge_state(self, header: SessionHeader, delta: Delta) -> dict[int, SharedEntries] | None:
        """A bucketed state: each touched bucket read, merged (expired keys dropped, then
        deletes, then sets) and written back; an overfull bucket doubles the buckets. An inline
        state grown past INLINE_KEYS moves to buckets. The buckets rewritten, by number (None:
        the state is not, or no longer, in the same buckets)."""
        sid, now = header.session_id, delta.now
        buckets = header.state_buckets
        if not buckets:
            if len(header.state) > INLINE_KEYS:
                self._spread(header, header.state)
            return None
        touched: dict[int, list[str]] = {}
        for key in (*delta.delete, *delta.set):
            touched.setdefault(bucket_of(key, buckets), []).append(key)
        overfull = False
        rewritten: dict[int, SharedEntries] = {}
        for n, keys in touched.items():
            # the bucket's other keys stay as stored (a load checks them): none is decoded
            kept = self._live_wires(sid, n, now)
            for key in keys:
                kept.pop(key, None)
                if key in delta.set:
                    kept[key] = delta.set[key].to_wire()
            rewritten[n] = self._put_merged(sid, n, kept)
            overfull = overfull or len(kept) > 2 * BUCKET_KEYS
        if overfull:
            self._spread(header, self._with_state(header).live_state(now))
            return None
        return rewritten

    def _spread(self, header: SessionHeader, state: Mapping[str, Entry]) -> None:
        """Spread a state over buckets of about BUCKET_KEYS keys each (a power of two of them)."""
        self._drop_buckets(header)
        buckets = 1
        while buckets * BUCKET_KEYS < len(state):
            buckets *= 2
        parts: list[dict[str, Entry]] = [{} for _ in range(buckets)]
        for key, entry in state.items():
            parts[bucket_of(key, buckets)][key] = entry
        for n, entries in enumerate(parts):
            self._put_bucket(header.session_id, n, entries)
        header.state_buckets = buckets
        header.state = {}

    def commit(self, delta: Delta) -> Committed:
        sid = delta.session_id
        with self.kv.transaction():
            read = self._read_header(sid)
            stored, stored_data = (None, None) if read is None else read
            live = stored is not None and stored.live(delta.now)
            old_count = stored.message_count if stored is not None else 0
            header = apply_delta(stored if live else None, delta)
            created = not live
            if stored is not None and created:
                self._drop_buckets(stored)
            if stored is not None and (created or delta.replace_log):
                self._drop_log(sid, old_count)
            rewritten = self._merge_state(header, delta)
            self._append(sid, header.message_count - len(delta.append), delta.append)
            self._put_vectors(sid, delta.vectors)
            data = self._put_header(header)
            if rewritten is not None and live and stored_data is not None:
                self._assembled.rewritten("h:" + sid, stored_data, data, rewritten)
            if created and stored is None:
                self._link(header, delta.now)
            if created and header.expires_at is not None and "/" not in sid:
                self.kv.schedule(sid, header.expires_at)
        if sid in self._subscribers:  # a change is built only for someone listening
            changed = tuple(sorted({*delta.set, *delta.delete}))
            self._publish(Change(sid, header.revision, header.message_count, changed), header)
        if delta.now >= self._next_sweep:
            self.reclaim(delta.now)
        return Committed.of(header)

    def _append(self, sid: str, position: int, messages: list[bytes]) -> None:
        """Each touched chunk rewritten once; the grown chunk is kept unpacked (the next load
        reads it), when what it held before is known."""
        while messages:
            n, offset = divmod(position, CHUNK)
            take = messages[: CHUNK - offset]
            key = f"m:{sid}:{n}"
            data = self.kv.get(key) if offset else None
            before: list[bytes] | None
            if data is not None and (grown := appended(data, offset, take)) is not None:
                before = self._unpacked.made_from(key, data)
            else:  # a new chunk, or one holding more than the header counts
                before = self._chunk(sid, "m", n)[:offset] if offset else []
                grown = pack(before + take)
            if before is not None and len(before) == offset:
                self._unpacked.keep(key, grown, before + take)
            self.kv.set(key, grown)
            position += len(take)
            messages = messages[len(take) :]

    def _put_vectors(self, sid: str, vectors: dict[int, bytes]) -> None:
        """One w: record per vector, and the bitmap of its chunk (8 bytes): O(what is added).
        A chunk an earlier version wrote whole is moved to w: records first, once."""
        by_chunk: dict[int, dict[int, bytes]] = {}
        for position, vector in vectors.items():
            by_chunk.setdefault(position // CHUNK, {})[position] = vector
        for n, part in by_chunk.items():
            present = self._present(sid, n)
            if present is None:
                present = 0
                legacy: dict[int, bytes] = self._chunk(sid, "v", n)
                if legacy:
                    part = {**legacy, **part}
                    self.kv.delete(f"v:{sid}:{n}")
            for position, vector in part.items():
                self.kv.set(f"w:{sid}:{position}", vector)
                present |= 1 << (position - n * CHUNK)
            self.kv.set(f"x:{sid}:{n}", present.to_bytes(8, "little"))

    @staticmethod
    def _vector_chunks(count: int) -> range:
        """The chunks that may hold a log of `count` messages' vectors (and as many index
        records below position 0)."""
        return range(-count // CHUNK, (count + CHUNK - 1) // CHUNK)

    def _drop_vectors(self, sid: str, count: int) -> None:
        for n in self._vector_chunks(count):
            present = self._present(sid, n)
            if present is not None:
                for i in range(CHUNK):
                    if present >> i & 1:
                        self.kv.delete(f"w:{sid}:{n * CHUNK + i}")
                self.kv.delete(f"x:{sid}:{n}")
            self.kv.delete(f"v:{sid}:{n}")

    def _move_vectors(self, old: str, new: str, count: int) -> None:
        for n in self._vector_chunks(count):
            keys = [f"v:{{}}:{n}", f"x:{{}}:{n}"]
            present = self._present(old, n)
            if present is not None:
                keys += [f"w:{{}}:{n * CHUNK + i}" for i in range(CHUNK) if present >> i & 1]
            for key in keys:
                data = self.kv.get(key.format(old))
                if data is not None:
                    self.kv.set(key.format(new), data)
                    self.kv.delete(key.format(old))

    def _link(self, header: SessionHeader, now: float) -> None:
        """Record a new session in its parent's children or its user's index. A user whose
        sessions all expired starts afresh: what was left of their state is dropped first."""
        sid = header.session_id
        if sid.startswith(USER_PREFIX):
            return
        if "/" in sid:
            parent_id, name = sid.rsplit("/", 1)
            parent = self._header(parent_id)
            if parent is not None and name not in parent.children:
                parent.children.append(name)
                self._put_header(parent)
        elif header.user_id is not None:
            if not self._user_live(header.user_id, now):
                user = self._header(user_record_id(header.user_id))
                if user is None or self._user_dead(user, now):
                    self._drop_user(header.user_id)
                else:  # state with a lifetime of its own (user_ttl) stays
                    self.kv.delete("i:" + header.user_id)
            index = self._index(header.user_id)
            if sid not in index:
                index.append(sid)
                self.kv.set("i:" + header.user_id, pack(index))

    def _index(self, user_id: str) -> list[str]:
        data = self.kv.get("i:" + user_id)
        if data is None:
            return []
        try:
            index = unpack(data)
        except Exception as exc:
            raise CorruptRecord(user_record_id(user_id), f"bad user index ({exc})") from exc
        if type(index) is not list or not all(type(sid) is str for sid in index):
            raise CorruptRecord(user_record_id(user_id), "bad user index (not a list of ids)")
        return index

    def _unlink_from_index(self, header: SessionHeader) -> None:
        if header.user_id is None or "/" in header.session_id:
            return
        index = self._index(header.user_id)
        if header.session_id in index:
            index.remove(header.session_id)
            if index:
                self.kv.set("i:" + header.user_id, pack(index))
            else:
                self.kv.delete("i:" + header.user_id)

    def _remove(self, sid: str) -> SessionHeader | None:
        header = self._header(sid)
        if header is None:
            return None
        for name in header.children:
            self._remove(f"{sid}/{name}")
        self._drop_log(sid, header.message_count)
        self._drop_buckets(header)
        self._delete_kept("h:" + sid)
        return header

    def delete(self, session_id: str) -> bool:
        with self.kv.transaction():
            header = self._remove(session_id)
            if header is None:
                return False
            self._unlink_from_index(header)
            if "/" in session_id:
                parent_id, name = session_id.rsplit("/", 1)
                parent = self._header(parent_id)
                if parent is not None and name in parent.children:
                    parent.children.remove(name)
                    self._put_header(parent)
        self.kv.scrub()
        self._publish(Change(session_id, 0, 0, deleted=True), None)
        return True

    def _move(self, old: str, new: str) -> SessionHeader:
        header = self._header(old)
        if header is None:
            raise SessionNotFound(old)
        records = [("m", n) for n in range((header.message_count + CHUNK - 1) // CHUNK)]
        self._move_vectors(old, new, header.message_count)
        records += [("s", n) for n in range(header.state_buckets)]
        for kind, n in records:
            data = self.kv.get(f"{kind}:{old}:{n}")
            if data is not None:
                self.kv.set(f"{kind}:{new}:{n}", data)
                self._delete_kept(f"{kind}:{old}:{n}")
        for name in header.children:
            self._move(f"{old}/{name}", f"{new}/{name}")
        self._delete_kept("h:" + old)
        header.session_id = new
        self._put_header(header)
        return header

    def rename(self, old_id: str, new_id: str, now: float) -> None:
        with self.kv.transaction():
            if self.read_header(old_id, now) is None:
                raise SessionNotFound(old_id)
            header = self._move(old_id, new_id)
            if header.expires_at is not None and "/" not in new_id:
                self.kv.schedule(new_id, header.expires_at)
            if header.user_id is not None and "/" not in new_id:
                index = self._index(header.user_id)
                index = [new_id if s == old_id else s for s in index]
                self.kv.set("i:" + header.user_id, pack(index))

    # -- users, listing, expiry ------------------------------------------------------------------

    def user_sessions(self, user_id: str, now: float) -> list[str]:
        return [sid for sid in self._index(user_id) if (h := self._header(sid)) and h.live(now)]

    def forget_user(self, user_id: str) -> int:
        with self.kv.transaction():
            index = self._index(user_id)
            removed = sum(self._remove(sid) is not None for sid in index)
            self.kv.delete("i:" + user_id)
            self._remove(user_record_id(user_id))
        self.kv.scrub()
        return removed

    def session_ids(self) -> Iterator[str]:
        for key in self.kv.keys("h:"):
            sid = key[2:]
            if "/" not in sid and not sid.startswith(USER_PREFIX):
                yield sid

    def purge(self, now: float, progress: Progress | None = None) -> int:
        """Expired sessions and keys, then what users left: state without a live session (or
        past its own expiry), and index entries that point at nothing."""
        removed = 0
        keys = list(self.kv.keys("h:"))
        indexes = list(self.kv.keys("i:"))
        total = len(keys) + len(indexes)
        for done, key in enumerate(keys, 1):
            if progress is not None:
                progress(done, total)
            sid = key[2:]
            with self.kv.transaction():
                header = self._header(sid)
                if header is None or sid.startswith(USER_PREFIX):
                    continue
                if not header.live(now) and "/" not in sid:
                    self._remove(sid)
                    self._unlink_from_index(header)
                    removed += 1
                    continue
                self._drop_expired_keys(header, now)
                if header.expires_at is not None and "/" not in sid:
                    self.kv.schedule(sid, header.expires_at)  # sessions from before schedules
        for done, key in enumerate(indexes, len(keys) + 1):
            if progress is not None:
                progress(done, total)
            with self.kv.transaction():
                self._purge_user(key[2:], now)
        for key in self.kv.keys("h:" + USER_PREFIX):
            with self.kv.transaction():
                self._purge_user(key[2 + len(USER_PREFIX) :], now)
        self.kv.scrub()
        return removed

    def _drop_expired_keys(self, header: SessionHeader, now: float) -> None:
        sid = header.session_id
        if header.state_buckets:
            for n in range(header.state_buckets):
                bucket = self._bucket(sid, n)
                live = {k: e for k, e in bucket.items() if e.live(now)}
                if len(live) < len(bucket):
                    self._put_bucket(sid, n, live)
        elif any(not e.live(now) for e in header.state.values()):
            header.state = header.live_state(now)
            self._put_header(header)

    def _purge_user(self, user_id: str, now: float) -> None:
        """Drop index entries of sessions that are gone, and the user's state once dead."""
        index = self._index(user_id)
        kept = [sid for sid in index if (h := self._header(sid)) is not None and h.live(now)]
        if kept != index:
            if kept:
                self.kv.set("i:" + user_id, pack(kept))
            else:
                self.kv.delete("i:" + user_id)
        user = self._header(user_record_id(user_id))
        if user is not None and self._user_dead(user, now):
            self._remove(user_record_id(user_id))
        elif user is not None:
            self._drop_expired_keys(user, now)

    def reclaim(self, now: float) -> int:
        """Remove up to SWEEP_BATCH records that are due (expired sessions, and user records
        left without a live session or past user_ttl); the number of records looked at.

        Runs at most once per SWEEP_PAUSE in a process, unless the last sweep found a full
        batch (then the next operation goes on), so sweeps keep pace with what saves add and
        an operation in between pays one comparison. Never fails the operation that calls it:
        a store that is busy or unreachable is swept by a later one."""
        if now < self._next_sweep:
            return 0
        removed = 0
        try:
            with self.kv.transaction():
                due = self.kv.take_due(now, SWEEP_BATCH)
                for record_id in due:
                    with suppress(CorruptRecord):  # left for inspection (and off the schedule)
                        removed += self._reclaim_one(record_id, now)
        except (StoreUnavailable, WouldBlock):
            return 0
        self._next_sweep = now if len(due) == SWEEP_BATCH else now + SWEEP_PAUSE
        if removed:
            telemetry.swept(removed, self.name)
        if removed and now >= self._next_scrub:
            self._next_scrub = now + SCRUB_PAUSE
            with suppress(StoreUnavailable, WouldBlock):
                self.kv.scrub()
        return len(due)

    def _reclaim_one(self, record_id: str, now: float) -> bool:
        """Remove one scheduled record if it is dead, else schedule it at its current expiry."""
        header = self._header(record_id)
        if header is None:
            return False
        if record_id.startswith(USER_PREFIX):
            if self._user_dead(header, now):  # past user_ttl (sessions keep their index)
                self._remove(record_id)
                return True
        elif not header.live(now):
            self._remove(record_id)
            self._unlink_from_index(header)
            user_id = header.user_id
            if user_id is not None and not self._user_live(user_id, now):
                user = self._header(user_record_id(user_id))
                if user is None or self._user_dead(user, now):
                    self._drop_user(user_id)
            return True
        if header.expires_at is not None:
            self.kv.schedule(record_id, header.expires_at)
        return False

    def close(self) -> None:
        self.kv.close()

    # -- live changes ----------------------------------------------------------------------------

    def subscribe(self, session_id: str) -> LocalSubscription:
        sub = LocalSubscription(session_id, self._header, self._unsubscribe, self.poll_interval)
        with self._subscribers_lock:
            self._subscribers.setdefault(session_id, set()).add(sub)
        return sub

    def _unsubscribe(self, sub: LocalSubscription) -> None:
        with self._subscribers_lock:
            subs = self._subscribers.get(sub.session_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subscribers[sub.session_id]

    def _publish(self, change: Change, header: SessionHeader | None) -> None:
        with self._subscribers_lock:
            subs = list(self._subscribers.get(change.session_id, ()))
        for sub in subs:
            sub.push(change, header)
