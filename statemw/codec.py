"""Bytes in the store: msgpack with a format byte, optionally sealed with AES-GCM.

Every record starts with one format byte, so a later statemw can read what this one wrote:
    0x01  msgpack
    0x02  AES-GCM: 8-byte key id, 12-byte nonce, then the sealed msgpack (tag included)
    0x03  as 0x02, sealing a *named* state entry: msgpack [name, value]
An embedding vector's body is packed float32 instead of msgpack (statemw.vectors).
A list of keys rotates: the first seals, any opens (the key id picks it).

Names at rest (encryption on): a state key is stored under a keyed hash of its name ("#" and 22
base64url characters) and its record (0x03) carries the name sealed; a user is indexed under a
keyed hash of the user id (a *user ref*), and each session record carries the user id sealed,
under the reserved key "#" (which also lets a load check the key before anything is read or
written). The hash keys are derived from the encryption keys; the first key's is the one
written, every configured key's is looked up (rotation). Without encryption, names and user
ids are stored as they are.

One module, past 400 lines, because it is the one place bytes are made and read: every record
kind goes through the same format byte, sealing and name hashing, and a change to any of them
has to keep old records readable.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import os
import threading
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, cast
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgpack

from statemw._decoded import DecodedMessages, KeptByBytes
from statemw._state_parts import Maps, PartedState, PlainState, StoredSizes, decode_parts
from statemw.errors import ConfigurationError, CorruptRecord, DecryptionError, UnencodableValue
from statemw.ids import not_an_option
from statemw.messages import Message, MessageRecord
from statemw.records import Entry, Summary
from statemw.sketch import unpack_block
from statemw.vectors import Vector, pack_vector, unpack_vector

PLAIN = 0x01
SEALED = 0x02
NAMED = 0x03
_PLAIN_BYTE = bytes((PLAIN,))
_SEALED_BYTE = bytes((SEALED,))
_NAMED_BYTE = bytes((NAMED,))
DECODED_VALUE_BYTES = 4 << 20
"""Bytes of plain state values kept decoded per store, in each of two generations."""
_IMMUTABLE = frozenset({str, bytes, int, float, bool, type(None)})
"""What a decoded value may be to be kept and shared: nobody can change it."""
_MISSING: Any = object()
META_KEY = "#"
"""The stored key of a session's sealed facts (its user id) when encryption is on."""
_NAME_CACHE = 4096
_NAMED_AAD = b"\x03named"
"""Authenticated with a named entry, so a record cannot pass for the other format."""
_NONCE = 12
_KEY_ID = 8

EncryptionKey = bytes | str


def generate_key() -> str:
    """A fresh random 256-bit encryption key, base64url text for an environment variable; never
    starting with "-", so `--encryption-key KEY` on a command line is not read as an option."""
    return not_an_option(lambda: base64.urlsafe_b64encode(os.urandom(32)).decode())


def _key_bytes(key: EncryptionKey) -> bytes:
    if isinstance(key, str):
        try:
            raw = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
        except ValueError as exc:
            raise ConfigurationError(
                "encryption_key text must be base64url (statemw.generate_key() makes one)"
            ) from exc
    else:
        raw = bytes(key)
    if len(raw) not in (16, 24, 32):
        raise ConfigurationError(
            f"encryption_key must be 16, 24 or 32 bytes (got {len(raw)}); "
            "statemw.generate_key() makes a 32-byte one"
        )
    return raw


def _key_id(raw: bytes) -> bytes:
    return hashlib.sha256(b"statemw key id\x00" + raw).digest()[:_KEY_ID]


def _hash_key(raw: bytes) -> bytes:
    """The key names are hashed with, derived from an encryption key (never the key itself)."""
    return hashlib.sha256(b"statemw name hash\x00" + raw).digest()


def _digest(key: bytes, kind: bytes, text: str) -> str:
    mac = hmac.new(key, kind + b"\x00" + text.encode("utf-8", "surrogatepass"), hashlib.sha256)
    return "#" + base64.urlsafe_b64encode(mac.digest()[:16]).decode()[:22]


# msgpack ext types for the values Flask's tagged JSON carries, so they come back as they went in
_TUPLE, _DATETIME, _DATE, _UUID, _DECIMAL, _MARKUP = 1, 2, 3, 4, 5, 6

STORABLE = (
    "None, bool, int, float, str, bytes, lists, tuples and dicts of them, datetime, date, "
    "UUID, Decimal and Markup"
)


def _ext(obj: Any) -> Any:
    """msgpack's hook for types it has no encoding of."""
    kind = type(obj)
    if isinstance(obj, tuple):
        return msgpack.ExtType(_TUPLE, _pack_nested(list(obj)))
    if kind is datetime:
        return msgpack.ExtType(_DATETIME, _datetime_text(obj).encode())
    if kind is date:
        return msgpack.ExtType(_DATE, obj.isoformat().encode())
    if kind is UUID:
        return msgpack.ExtType(_UUID, obj.bytes)
    if kind is Decimal:
        return msgpack.ExtType(_DECIMAL, str(obj).encode())
    if isinstance(obj, str):
        if kind.__name__ == "Markup" and hasattr(obj, "__html__"):
            return msgpack.ExtType(_MARKUP, str.encode(obj))
        return str.__str__(obj)  # a str subclass (an enum, say): stored as its text
    # other subclasses of plain types (an IntEnum, an OrderedDict): stored as the plain type
    if isinstance(obj, bool):
        return bool(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, bytes):
        return bytes(obj)
    if isinstance(obj, list):
        return list(obj)
    if isinstance(obj, dict):
        return dict(obj)
    raise TypeError(f"can not serialize {kind.__name__!r} object")


def _datetime_text(value: datetime) -> str:
    """ISO 8601 with its UTC offset; a datetime in a named zone (zoneinfo) also carries the zone's
    name, as RFC 9557 writes it: "2024-11-03T01:30:00-05:00[America/New_York]"."""
    zone = value.tzinfo.key if isinstance(value.tzinfo, ZoneInfo) else None
    return value.isoformat() + (f"[{zone}]" if zone else "")


def _datetime_of(text: str) -> datetime:
    """_datetime_text's datetime: its wall time back in its named zone, with the `fold` whose
    offset was stored (so an hour a clock change repeats, or one it skips, comes back as it
    was); the same instant in that zone if its rules have changed since; where the zone is
    unknown here, at its stored offset."""
    instant, _, zone = text.partition("[")
    value = datetime.fromisoformat(instant)
    if not zone:
        return value
    try:
        named = ZoneInfo(zone.rstrip("]"))
    except (ZoneInfoNotFoundError, ValueError):
        return value
    for fold in (0, 1):
        local = value.replace(tzinfo=named, fold=fold)
        if local.utcoffset() == value.utcoffset():
            return local
    return value.astimezone(named)


def _unext(code: int, data: bytes) -> Any:
    if code == _TUPLE:
        return tuple(unpack(data))
    if code == _DATETIME:
        return _datetime_of(data.decode())
    if code == _DATE:
        return date.fromisoformat(data.decode())
    if code == _UUID:
        return UUID(bytes=data)
    if code == _DECIMAL:
        return Decimal(data.decode())
    if code == _MARKUP:
        try:
            from markupsafe import Markup
        except ImportError:  # pragma: no cover - markupsafe comes with Flask
            return data.decode()
        return Markup(data.decode())
    return msgpack.ExtType(code, data)


def _new_packer() -> msgpack.Packer:
    return msgpack.Packer(use_bin_type=True, strict_types=True, default=_ext)


_packers = threading.local()
"""A Packer per thread, made once: msgpack.packb makes (and frees) one per call, which costs
more than packing a small record."""


def pack(obj: Any) -> bytes:
    """msgpack, raising TypeError/OverflowError/ValueError for what it cannot encode."""
    try:
        packer: msgpack.Packer = _packers.packer
    except AttributeError:
        packer = _packers.packer = _new_packer()
    return cast(bytes, packer.pack(obj))


def _pack_nested(obj: Any) -> bytes:
    """pack() from inside a Packer's own `default` hook, where the thread's Packer is busy."""
    return cast(bytes, _new_packer().pack(obj))


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False, ext_hook=_unext)


class Codec:
    """Encodes values and messages for the store; seals them when keys are configured."""

    def __init__(
        self, encryption_key: EncryptionKey | Sequence[EncryptionKey] | None = None
    ) -> None:
        if encryption_key is None:
            keys: list[bytes] = []
        elif isinstance(encryption_key, bytes | str):
            keys = [_key_bytes(encryption_key)]
        else:
            keys = [_key_bytes(k) for k in encryption_key]
            if not keys:
                raise ConfigurationError("encryption_key list is empty")
        self._aead: list[tuple[bytes, Any]] = []
        if keys:
            try:
                from cryptography.hazmat.primitives.ciphers.aead import AESGCM
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise ConfigurationError(
                    "encryption at rest needs the 'cryptography' package: "
                    "pip install 'statemw[crypto]'"
                ) from exc
            self._aead = [(_key_id(k), AESGCM(k)) for k in keys]
        self._by_id = dict(self._aead)
        self._hash_keys = [_hash_key(k) for k in keys]
        self._names: dict[str, str] = {}
        self._decoded = DecodedMessages()  # plain records only (see statemw._decoded)
        self._values: KeptByBytes[Any] = KeptByBytes(DECODED_VALUE_BYTES)  # the same

    @property
    def decoded(self) -> Mapping[bytes, MessageRecord]:
        """Plain message records decoded before, by their bytes (statemw._decoded)."""
        return self._decoded

    @property
    def encrypted(self) -> bool:
        return bool(self._aead)

    def __repr__(self) -> str:
        return f"Codec(keys={len(self._aead)})"

    def encode(self, obj: Any, *, what: str | Callable[[], str]) -> bytes:
        """Encode one value; `what` names it in the error ("state key 'cart'"), or makes the
        name when one is needed (a hot path should not build it for every value)."""
        try:
            body = pack(obj)
        except (TypeError, OverflowError, ValueError) as exc:
            name = what if isinstance(what, str) else what()
            raise UnencodableValue(
                f"{name}: cannot store {type(obj).__name__} ({exc}); store {STORABLE}"
            ) from exc
        return self.seal(body)

    def seal(self, body: bytes) -> bytes:
        if not self._aead:
            return bytes((PLAIN,)) + body
        key_id, aead = self._aead[0]
        nonce = os.urandom(_NONCE)
        sealed: bytes = aead.encrypt(nonce, body, key_id)
        return bytes((SEALED,)) + key_id + nonce + sealed

    def open(self, data: bytes, *, session_id: str) -> bytes:
        """The msgpack body of a record; CorruptRecord (naming the session) when it won't open."""
        if not data:
            raise CorruptRecord(session_id, "empty record")
        fmt = data[0]
        if fmt == PLAIN:
            return data[1:]
        if fmt != SEALED and fmt != NAMED:
            raise CorruptRecord(
                session_id, f"unknown format byte {fmt:#04x} (written by a newer statemw?)"
            )
        key_id = data[1 : 1 + _KEY_ID]
        aead = self._by_id.get(key_id)
        if aead is None:
            if not self._aead:
                raise DecryptionError(session_id, "record is encrypted; configure encryption_key")
            raise DecryptionError(session_id, "record was encrypted with a key not configured")
        nonce = data[1 + _KEY_ID : 1 + _KEY_ID + _NONCE]
        try:
            aad = key_id if fmt == SEALED else key_id + _NAMED_AAD
            body: bytes = aead.decrypt(nonce, data[1 + _KEY_ID + _NONCE :], aad)
            return body
        except Exception as exc:  # cryptography's InvalidTag
            raise DecryptionError(session_id, "authentication failed (tampered record?)") from exc

    def decode(self, data: bytes, *, session_id: str) -> Any:
        body = self.open(data, session_id=session_id)
        try:
            return unpack(body)
        except Exception as exc:
            raise CorruptRecord(session_id, f"bad msgpack ({exc})") from exc

    # -- the records a session is made of --------------------------------------------------------

    def decode_message(self, session_id: str, data: bytes) -> MessageRecord:
        """A logged message; the hot path of every load, so plain records skip the layers. A
        record read before in this process comes back shared (statemw._decoded)."""
        keep = type(data) is bytes  # what the decoded messages are keyed by
        if keep:
            found = self._decoded.get(data) or self._decoded.recall(data)
            if found is not None:
                return found
        try:
            if data[0] == PLAIN:  # msgpack >= 1.0 decodes str as str (raw=False)
                message, tokens, created_at = msgpack.unpackb(
                    data[1:], strict_map_key=False, ext_hook=_unext
                )
            else:
                message, tokens, created_at = self.decode(data, session_id=session_id)
                keep = False  # never kept decrypted
            if type(message) is dict and type(tokens) is int and type(message.get("role")) is str:
                record = MessageRecord(message, tokens, created_at)
                return self._decoded.keep(data, record) if keep else record
            if type(message) is dict and type(tokens) is int:
                raise TypeError("a message without a role")
            raise TypeError("not a message and its token count")
        except CorruptRecord:
            raise
        except Exception as exc:
            raise CorruptRecord(session_id, f"bad message record ({exc})") from exc

    def keep_encoded(self, encoded: Sequence[bytes], records: Sequence[MessageRecord]) -> None:
        """Messages just encoded for a save: kept decoded, as copies of `records` made now (a
        session's own records may change later), so the next load of them needs no decode.
        Keyed by content, an entry is right whether or not the save then lands."""
        for data, record in zip(encoded, records, strict=True):
            if data[0] == PLAIN:  # never kept decrypted
                self._decoded.keep(data, record.own_copy())

    def decode_summary(self, session_id: str, summary: Summary) -> Message:
        message = self.decode(summary.value, session_id=session_id)
        if not isinstance(message, dict):
            raise CorruptRecord(session_id, "summary is not a message")
        return message

    def encode_vector(self, vector: Vector, check: int) -> bytes:
        """A message's embedding as packed float32 with its text check (statemw.vectors)."""
        try:
            body = pack_vector(vector, check)
        except (TypeError, ValueError) as exc:
            raise UnencodableValue(f"an embedding must be a sequence of numbers ({exc})") from exc
        return self.seal(body)

    def decode_vector(self, session_id: str, data: bytes) -> tuple[array[float], int | None]:
        """(float32 row, text check) of a stored vector: packed, or the earlier msgpack list of
        floats (no check)."""
        body = self.open(data, session_id=session_id)
        try:
            packed = unpack_vector(body)
            if packed is not None:
                return packed
            return array("f", [float(x) for x in unpack(body)]), None
        except Exception as exc:
            raise CorruptRecord(session_id, f"bad vector record ({exc})") from exc

    def decode_sketch(self, session_id: str, data: bytes) -> tuple[int, int, int, bytes]:
        """(dims, present slots, system slots, sketches) of a stored block of sketches
        (statemw.sketch)."""
        body = self.open(data, session_id=session_id)
        try:
            block = unpack_block(body)
        except ValueError as exc:
            raise CorruptRecord(session_id, f"bad sketch block ({exc})") from exc
        if block is None:
            raise CorruptRecord(session_id, "a vector where a sketch block belongs")
        return block

    # -- names at rest ---------------------------------------------------------------------------

    def entry_key(self, name: str) -> str:
        """Where a state key is stored: its keyed hash when encrypting, else the name itself."""
        if not self._aead:
            return name
        stored = self._names.get(name)
        if stored is None:
            if len(self._names) >= _NAME_CACHE:
                self._names.clear()
            stored = self._names[name] = _digest(self._hash_keys[0], b"key", name)
        return stored

    def user_refs(self, user_id: str) -> list[str]:
        """What a user may be indexed under, the one new users get first: the keyed hash under
        each configured key, then the user id itself (stores that were not encrypted before).
        Without encryption, just the user id."""
        if not self._aead:
            return [user_id]
        return [_digest(k, b"user", user_id) for k in self._hash_keys] + [user_id]

    def encode_entry(
        self, name: str, value: Any, *, what: str | Callable[[], str]
    ) -> tuple[str, bytes]:
        """A state value as stored: (stored key, record). Encrypting, the record seals the name
        with the value (format 0x03); else it is the plain value under its name."""
        if not self._aead:
            return name, self.encode(value, what=what)
        try:
            body = pack(value)
        except (TypeError, OverflowError, ValueError) as exc:
            label = what if isinstance(what, str) else what()
            raise UnencodableValue(
                f"{label}: cannot store {type(value).__name__} ({exc}); store {STORABLE}"
            ) from exc
        return self.entry_key(name), self.seal_named(pack(name), body)

    def meta_entry(self, user_id: str | None, now: float) -> Entry:
        """The sealed facts of a session record (its user id), stored under META_KEY."""
        return Entry(self.seal_named(pack(None), pack(user_id)), now)

    def seal_named(self, name_body: bytes, value_body: bytes) -> bytes:
        """Seal [name, value] from their msgpack bodies (a value's bytes carried unchanged)."""
        key_id, aead = self._aead[0]
        nonce = os.urandom(_NONCE)
        sealed: bytes = aead.encrypt(nonce, b"\x92" + name_body + value_body, key_id + _NAMED_AAD)
        return bytes((NAMED,)) + key_id + nonce + sealed

    def open_entry(self, record_id: str, stored_key: str, data: bytes) -> tuple[Any, bytes]:
        """(name, the value's msgpack body) of a stored state entry, whatever its format; the
        name is None for a record's sealed facts (META_KEY)."""
        body = self.open(data, session_id=record_id)
        if data[0] != NAMED:
            return stored_key, body
        try:
            unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, ext_hook=_unext)
            unpacker.feed(body)
            if unpacker.read_array_header() != 2:
                raise ValueError("not a [name, value] pair")
            name = unpacker.unpack()
            offset = unpacker.tell()
        except Exception as exc:
            raise CorruptRecord(record_id, f"bad named entry ({exc})") from exc
        if name is not None and not isinstance(name, str):
            raise CorruptRecord(record_id, "bad named entry (the name is not text)")
        return name, body[offset:]

    def _decode_value(self, record_id: str, data: bytes) -> Any:
        """A stored value of a store without keys, kept when plain and immutable (a str, a
        number...): the next load of the same bytes finds it (statemw._decoded)."""
        value = self._values.recall(data, _MISSING)
        if value is not _MISSING:
            return value
        value = self.decode(data, session_id=record_id)  # without keys only plain ones decode
        return self._values.keep(data, value) if type(value) in _IMMUTABLE else value

    def _plain_state(self, record_id: str, entries: Mapping[str, Entry], now: float) -> PlainState:
        """The live entries of a store without keys, decoded to be kept (_state_parts)."""
        gone: list[str] = []
        fresh: list[tuple[str, bytes]] = []
        values, expiry, sizes, checks = self._plain_maps(record_id, entries, now, gone, fresh)
        until = min(expiry.values()) if expiry else math.inf
        total = sum(sizes.values())
        return PlainState(values, expiry, sizes, total, checks, now, until, gone, fresh)

    def _plain_maps(
        self,
        record_id: str,
        entries: Mapping[str, Entry],
        now: float,
        gone: list[str] | None = None,
        fresh: list[tuple[str, bytes]] | None = None,
    ) -> Maps:
        """The live entries of a store without keys, decoded in one pass; the keys left out as
        expired go to `gone`, and the mutable values to `fresh`, when they are given."""
        values: dict[str, Any] = {}
        expiry: dict[str, float] = {}
        sizes: dict[str, int] = {}
        checks: dict[str, tuple[float, float]] = {}
        known = self._values
        for key, entry in entries.items():
            if entry.expires_at is not None:
                if entry.expires_at <= now:
                    if gone is not None:
                        gone.append(key)
                    continue
                expiry[key] = entry.expires_at
            if entry.confirm_after is not None:
                checks[key] = (entry.confirm_after, entry.updated_at + entry.confirm_after)
            data = entry.value
            value = known.get(data, _MISSING)
            if value is _MISSING:
                value = self._decode_value(record_id, data)
                if fresh is not None and type(value) not in _IMMUTABLE:
                    fresh.append((key, data))
            values[key] = value
            sizes[key] = len(data)
        return values, expiry, sizes, checks

    def decode_state(
        self,
        record_id: str,
        entries: Mapping[str, Entry],
        now: float,
        into: dict[str, Any] | None = None,
    ) -> DecodedState:
        """A record's live state by name (sealed names opened), with what a TrackedState keeps
        beside the values and what a save must know, in the one pass a load makes anyway.
        `into`: an empty dict the values may be put in (the TrackedState that will hold them:
        a large state's values are then copied once); the answer's `values` says where they
        are."""
        if not self._aead:  # names are the stored keys (a sealed entry fails to decode)
            if type(entries) is PartedState:
                parted = decode_parts(
                    entries.parts,
                    now,
                    lambda part: self._plain_state(record_id, part, now),
                    lambda data: self._decode_value(record_id, data),
                    into,
                )
                if parted is not None:
                    return DecodedState(*parted, entries, _AS_STORED, _NONE_STALE)
            flat, expires, by_key, due = self._plain_maps(record_id, entries, now)
            sizes = StoredSizes(by_key)
            return DecodedState(flat, expires, sizes, due, entries, _AS_STORED, _NONE_STALE)
        values: dict[str, Any] = {}
        expiry: dict[str, float] = {}
        stored_sizes: dict[str, int] = {}
        checks: dict[str, tuple[float, float]] = {}
        names: dict[str, str] = {}
        stale: list[str] = []
        state = DecodedState(values, expiry, StoredSizes(), checks, {}, names, stale)
        plain = not any(e.value[:1] in (_SEALED_BYTE, _NAMED_BYTE) for e in entries.values())
        by_name = state.entries
        assert isinstance(by_name, dict)
        for stored, entry in entries.items():
            if entry.expires_at is not None and entry.expires_at <= now:
                continue
            if plain:  # a store from before encryption: names are the stored keys
                name: Any = stored
                value = self.decode(entry.value, session_id=record_id)
            else:
                name, body = self.open_entry(record_id, stored, entry.value)
                try:
                    value = unpack(body)
                except Exception as exc:
                    raise CorruptRecord(record_id, f"bad msgpack ({exc})") from exc
                state.sealed = state.sealed or entry.value[:1] != _PLAIN_BYTE
                if name is None:
                    if not (value is None or isinstance(value, str)):
                        raise CorruptRecord(record_id, "bad sealed facts (user id)")
                    state.user_id = value
                    names[META_KEY] = stored
                    continue
            older = names.get(name)
            if older is not None:  # one name under two stored keys (a key rotation): the newer
                if entries[older].updated_at > entry.updated_at:
                    stale.append(stored)
                    continue
                stale.append(older)
            names[name] = stored
            by_name[name] = entry
            values[name] = value
            stored_sizes[name] = len(entry.value)
            if entry.expires_at is not None:
                expiry[name] = entry.expires_at
            else:
                expiry.pop(name, None)
            if entry.confirm_after is not None:
                checks[name] = (entry.confirm_after, entry.updated_at + entry.confirm_after)
            else:
                checks.pop(name, None)
        state.sizes = StoredSizes(stored_sizes)  # with their total, now that all are in
        return state


@dataclass(slots=True)
class DecodedState:
    """A record's live state as loaded: values; expiry times of keys with a TTL; sizes as
    stored, with their total; `checks`: key -> (confirm_after, stale_at) of keys due for a check
    some day; the stored entries by name (what `updated_at` of an untouched key reads);
    `stored`: the stored key of each name; `stale`: stored keys a save should remove (a name's
    older duplicate); the user id the record carries sealed; whether anything in it was sealed."""

    values: dict[str, Any] = field(default_factory=dict)
    expiry: dict[str, float] = field(default_factory=dict)
    sizes: StoredSizes = field(default_factory=StoredSizes)
    checks: dict[str, tuple[float, float]] = field(default_factory=dict)
    entries: Mapping[str, Entry] = field(default_factory=dict)
    stored: Mapping[str, str] = field(default_factory=dict)
    stale: Sequence[str] = ()
    user_id: str | None = None
    sealed: bool = False


_AS_STORED: Mapping[str, str] = {}
"""DecodedState.stored without encryption: every name is its own stored key (never filled)."""
_NONE_STALE: Sequence[str] = ()


def encode_header(wire: list[Any]) -> bytes:
    """Headers hold ids, counters and already-encoded values: never sealed as a whole."""
    return bytes((PLAIN,)) + pack(wire)


def decode_header(data: bytes, *, session_id: str) -> list[Any]:
    if not data or data[0] != PLAIN:
        raise CorruptRecord(session_id, "header has an unknown format byte")
    try:
        wire = unpack(data[1:])
    except Exception as exc:
        raise CorruptRecord(session_id, f"bad msgpack in header ({exc})") from exc
    if not isinstance(wire, list):
        raise CorruptRecord(session_id, "header is not a list")
    return wire
