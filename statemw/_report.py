"""What statemw reports whether or not OpenTelemetry is there: the `statemw` logger's problem
lines, the keyed hash that names a session in them (and in spans), each store's health, and the
round-trip counter the networked backends bump. A leaf module (it imports nothing of statemw's),
so errors.py and the backends can report without import circles; statemw.telemetry builds the
OpenTelemetry side on it.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import os
import secrets
import threading
import time

logger = logging.getLogger("statemw")

# -- session ids, hashed -------------------------------------------------------------------------

KEY_ENV = "STATEMW_TELEMETRY_KEY"
"""A secret shared by an app's processes so their logs and spans hash a session id alike."""


def _key_of(secret: str | bytes) -> bytes:
    raw = secret.encode() if isinstance(secret, str) else bytes(secret)
    return hashlib.blake2b(raw, digest_size=32).digest()


_hash_key = _key_of(os.environ[KEY_ENV]) if os.environ.get(KEY_ENV) else secrets.token_bytes(32)


def session_hash(session_id: str) -> str:
    """A session's name in spans and logs: 12 hex digits of a keyed BLAKE2b of its id.

    The key is STATEMW_TELEMETRY_KEY (set it alike on every process of an app to follow one
    session across them), else random per process: either way nobody who reads the telemetry can
    tell or test which id it was, even for ids an app chose itself ("user-42-chat")."""
    return hashlib.blake2b(session_id.encode(), key=_hash_key, digest_size=6).hexdigest()


def set_hash_key(secret: str | bytes) -> None:
    """Hash session ids with this secret from now on (as STATEMW_TELEMETRY_KEY does)."""
    global _hash_key
    _hash_key = _key_of(secret)


# -- problems, logged whether or not OpenTelemetry is there --------------------------------------


def _reason_kind(reason: str) -> str:
    """A CorruptRecord's reason without the decoder's own words, which may quote the record."""
    return reason.split(" (", 1)[0]


def corrupt_record(session_id: str, reason: str) -> None:
    """A stored record failed to decode (CorruptRecord reports itself here when raised)."""
    logger.error(
        "statemw: a stored record of session %s cannot be read: %s",
        session_hash(session_id),
        _reason_kind(reason),
    )


def conflict(session_id: str, expected: int, actual: int) -> None:
    """A strict save lost a race (ConflictError reports itself here when raised)."""
    logger.info(
        "statemw: a strict save of session %s lost a race (expected revision %d, found %d)",
        session_hash(session_id),
        expected,
        actual,
    )


class Health:
    """Whether one store (a Redis URL, a PostgreSQL target, a diskcache directory) answers:
    logs the first failure of an outage at WARNING, the recovery at INFO, nothing between.

    Backends report from where they turn driver errors into StoreUnavailable; the check on the
    success path is one attribute (`down`)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.down = False
        self.since = 0.0
        self.failures = 0
        self._lock = threading.Lock()

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            self.failures += 1
            if self.down:
                return
            self.down, self.since = True, time.monotonic()
        logger.warning(
            "statemw: the session store %s is unavailable (%s); requests that need it fail "
            "with 503 until it answers again",
            self.target,
            exc,
        )

    def recovered(self) -> None:
        with self._lock:
            if not self.down:
                return
            self.down = False
            failures, self.failures = self.failures, 0
            seconds = time.monotonic() - self.since
        logger.info(
            "statemw: the session store %s answers again after %.1f s (%d failed calls)",
            self.target,
            seconds,
            failures,
        )


_health: dict[str, Health] = {}
_health_lock = threading.Lock()


def health(target: str) -> Health:
    """The one Health of a target, shared by a store's sync and async backends (and by every
    Store on the same target), so an outage is logged once."""
    with _health_lock:
        found = _health.get(target)
        if found is None:
            found = _health[target] = Health(target)
        return found


# -- round trips, counted by the backends that make them ------------------------------------------

ROUND_TRIPS: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "statemw_round_trips", default=None
)
"""While an observed operation runs: a one-item counter the Redis and PostgreSQL shells bump per
network round trip (a command, a script, a pipeline, a query). Unset otherwise."""


def round_trip() -> None:
    counter = ROUND_TRIPS.get()
    if counter is not None:
        counter[0] += 1


def purged(removed: int, seconds: float, backend: str) -> None:
    logger.info(
        "statemw: purge removed %d expired session(s) from %s in %.2f s", removed, backend, seconds
    )


def forgot_user(removed: int, backend: str) -> None:
    logger.info("statemw: forget_user removed a user's %d session(s) from %s", removed, backend)
