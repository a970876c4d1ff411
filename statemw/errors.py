"""The exceptions statemw raises: one tree, rooted at StateError.

StateError
├── SessionNotFound            no live session under that id (never stored, deleted or expired)
├── ConflictError              a strict (compare-and-set) save lost a race
├── StoreUnavailable           the backend cannot be reached; map it to 503
├── ConfigurationError         a bad store URL, option or key
├── InvalidValue               input statemw refuses, before anything is written
│   ├── UnencodableValue       a value msgpack cannot encode (names the key)
│   └── LimitExceeded          a message, value or session over a configured limit
└── CorruptRecord              a stored record that fails to decode (names the session)
    └── DecryptionError        no configured key opens the record

A ConflictError (INFO) and a CorruptRecord (ERROR) log themselves on the "statemw" logger when
raised, naming the session by its hash (statemw._report), so each is reported where it is found;
StoreUnavailable is logged by the backends, once per outage.
"""

from __future__ import annotations

from statemw._report import conflict, corrupt_record


class StateError(Exception):
    """Base class of every error statemw raises."""


class SessionNotFound(StateError, KeyError):
    """No live session is stored under this id."""

    def __init__(self, session_id: str) -> None:
        super().__init__(session_id)
        self.session_id = session_id

    def __str__(self) -> str:
        return f"no session {self.session_id!r} (never saved, deleted, or expired)"


class ConflictError(StateError):
    """A strict save found the session changed since it was loaded."""

    def __init__(self, session_id: str, expected: int, actual: int) -> None:
        super().__init__(session_id, expected, actual)
        self.session_id = session_id
        self.expected = expected
        self.actual = actual
        conflict(session_id, expected, actual)  # logged where it is found, with the id hashed

    def __str__(self) -> str:
        return (
            f"session {self.session_id!r} was saved elsewhere since it was loaded "
            f"(revision {self.actual}, expected {self.expected}); load it again and retry"
        )


class StoreUnavailable(StateError):
    """The store's backend cannot be reached; nothing was written. Apps map this to 503."""


class ConfigurationError(StateError, ValueError):
    """A store URL, option or key is not usable."""


class InvalidValue(StateError, ValueError):
    """Input statemw refuses before anything is written."""


class UnencodableValue(InvalidValue, TypeError):
    """A value cannot be stored (msgpack has no encoding for its type)."""


class LimitExceeded(InvalidValue):
    """A message, a state value or a session exceeds a configured limit."""


class CorruptRecord(StateError):
    """A stored record fails to decode; it is left in place for inspection."""

    def __init__(self, session_id: str, reason: str) -> None:
        super().__init__(session_id, reason)
        self.session_id = session_id
        self.reason = reason
        corrupt_record(session_id, reason)  # logged where it is found, with the id hashed

    def __str__(self) -> str:
        return f"stored record of session {self.session_id!r} cannot be read: {self.reason}"


class DecryptionError(CorruptRecord):
    """No configured encryption key opens the record (wrong key, or it was tampered with)."""
