"""Signing session ids with itsdangerous: built once per key source, remembering what it signed.

Values it issued or verified are remembered (bounded, with their timestamps), so the cookie a
client sends back costs a dict lookup instead of an HMAC; only exact values that verified are
remembered, and a remembered value still expires after `max_age`.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Sequence

from itsdangerous import BadSignature, Signer, TimestampSigner
from itsdangerous.encoding import base64_encode, int_to_bytes

from statemw.errors import ConfigurationError, InvalidValue
from statemw.ids import check_session_id

REMEMBERED_VALUES = 4096
"""Signed values remembered per key source."""


class Signing:
    """Signs and verifies session ids with itsdangerous, built once per key source.

    Keys are given newest first (statemw's order); the newest signs, all verify. Values it issued
    or verified are remembered (bounded), with their timestamps, so the same value costs no HMAC
    the next time; a remembered value still expires after `max_age`.
    """

    def __init__(
        self, secret: str | bytes | Sequence[str | bytes], salt: str, *, timed: bool
    ) -> None:
        listed = [secret] if isinstance(secret, str | bytes) else list(secret)
        if not listed or not all(listed):
            raise ConfigurationError("secret_key must be a non-empty string or list of them")
        keys = [k.encode() if isinstance(k, str) else k for k in reversed(listed)]
        self._timed = timed
        self._signer = TimestampSigner(keys, salt=salt) if timed else Signer(keys, salt=salt)
        self._key = self._signer.derive_key()  # the newest key, derived once, not per value
        self._known: dict[str, tuple[str, int]] = {}
        self._issued: dict[str, tuple[str, int]] = {}  # session id -> (value, signed at)

    def __repr__(self) -> str:
        return "Signing('**********')"

    def sign(self, session_id: str) -> str:
        """itsdangerous's (Timestamp)Signer.sign, with its derived key kept and its HMAC in C;
        signing the same id again within the second gives the same value, remembered."""
        now = int(time.time()) if self._timed else 0
        issued = self._issued.get(session_id)
        if issued is not None and issued[1] == now:
            return issued[0]
        value = session_id.encode()
        if self._timed:
            value += b"." + base64_encode(int_to_bytes(now))
        signed = (value + b"." + base64_encode(hmac.digest(self._key, value, "sha1"))).decode()
        self._remember(signed, session_id, now)
        if len(self._issued) >= REMEMBERED_VALUES:
            self._issued.pop(next(iter(self._issued)))
        self._issued[session_id] = (signed, now)
        return signed

    def unsign(self, value: str, max_age: int | None) -> str | None:
        """The id in a client's value, or None if it is tampered, expired or malformed."""
        known = self._known.get(value)
        if known is not None:
            session_id, signed_at = known
            if max_age is not None and int(time.time()) - signed_at > max_age:  # as itsdangerous
                return None
            return session_id
        try:
            if isinstance(self._signer, TimestampSigner):
                raw, signed = self._signer.unsign(value, max_age=max_age, return_timestamp=True)
                signed_at = int(signed.timestamp())
            else:
                raw, signed_at = self._signer.unsign(value), 0
            session_id = check_session_id(raw.decode())
        except (BadSignature, InvalidValue, UnicodeDecodeError):
            return None
        self._remember(value, session_id, signed_at)
        return session_id

    def _remember(self, value: str, session_id: str, signed_at: int) -> None:
        known = self._known
        if len(known) >= REMEMBERED_VALUES:
            known.pop(next(iter(known)))
        known[value] = (session_id, signed_at)
