"""statemw: server-side conversation sessions for stateless web apps.

from statemw import Session
session = Session.create(user_id="harsh")
session.add_message("user", "Find flights to Berlin")
session.save()
"""

from statemw._default import configure, default_store
from statemw._version import __version__ as __version__
from statemw.changes import Change
from statemw.codec import generate_key
from statemw.decorators import stateful
from statemw.errors import (
    ConfigurationError,
    ConflictError,
    CorruptRecord,
    DecryptionError,
    InvalidValue,
    LimitExceeded,
    SessionNotFound,
    StateError,
    StoreUnavailable,
    UnencodableValue,
)
from statemw.messages import Message, MessageLog
from statemw.session import Session, UserState
from statemw.state import StaleKey
from statemw.store import Store
from statemw.vectors import batched

__all__ = [
    "Change",
    "ConfigurationError",
    "ConflictError",
    "CorruptRecord",
    "DecryptionError",
    "InvalidValue",
    "LimitExceeded",
    "Message",
    "MessageLog",
    "Session",
    "SessionNotFound",
    "StaleKey",
    "StateError",
    "Store",
    "StoreUnavailable",
    "UnencodableValue",
    "UserState",
    "batched",
    "configure",
    "default_store",
    "generate_key",
    "stateful",
]
