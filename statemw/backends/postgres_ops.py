"""The PostgreSQL backend's logic, free of I/O: settings, statements, parameters, row parsing.

Each operation is a generator that yields the statements it needs (`Query`) and receives their
rows; `postgres.py` drives it on a pooled psycopg connection, sync or async. So the two backends
differ only by `await`, and every decision (and all SQL, via postgres_sql.py) lives here once.
A turn is one Query to load and one to commit, whatever the length of the history.
One module, past 400 lines, for the same reason as redis/ops.py: each decision once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias, TypeVar
from urllib.parse import parse_qsl, quote, urlencode

from statemw._drive import Flow, Step
from statemw.backends import postgres_sql as sql
from statemw.backends.base import Progress
from statemw.changes import Change
from statemw.errors import ConfigurationError, ConflictError, CorruptRecord, SessionNotFound
from statemw.records import (
    USER_PREFIX,
    Committed,
    Delta,
    Entry,
    SessionHeader,
    Snapshot,
    Summary,
    parent_ids,
)

DEFAULT_SCHEMA = "statemw"
PURGE_BATCH = 500
"""Records purge looks at per transaction (progress is reported between batches)."""
ID_PAGE = 1000
"""Session ids read per query by session_ids()."""
NOTIFY_KEYS_BYTES = 7000
"""NOTIFY payloads stop at 8000 bytes: a save changing more key names sends the first ones."""

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

_OPTIONS: dict[str, type] = {
    "schema": str,
    "pool_min_size": int,
    "pool_max_size": int,
    "pool_timeout": float,
    "connect_timeout": float,
    "notify": bool,
    "create": bool,
}


T = TypeVar("T")
Rows: TypeAlias = list[tuple[Any, ...]]


class Connection(Protocol):
    """What runs a query: the sync shell in postgres.py, on a pooled connection."""

    def query(self, query: Query) -> Rows: ...


class AsyncConnection(Protocol):
    async def query(self, query: Query) -> Rows: ...


@dataclass(frozen=True, slots=True)
class Query(Step[Connection, AsyncConnection, Rows]):
    """One statement, one round trip; the reply is its rows (empty for none).

    With params, results come in binary (bytea as raw bytes); without, the text may hold several
    statements (the schema's migrations)."""

    sql: bytes
    params: Mapping[str, Any] | None = None

    def run(self, io: Connection) -> Rows:
        return io.query(self)

    async def arun(self, aio: AsyncConnection) -> Rows:
        return await aio.query(self)


Op: TypeAlias = Flow[Connection, AsyncConnection, T]
"""An operation: yields queries (statemw._drive), returns a T."""


class Sql:
    """The statements of postgres_sql.py rendered for one schema, encoded once."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        names = {"s": f'"{schema}"', "schema_literal": f"'{schema}'"}

        def render(text: str) -> bytes:
            return text.format(**names).encode()

        self.migrations = {v: [render(t) for t in ts] for v, ts in sql.MIGRATIONS.items()}
        self.probe = render(sql.PROBE)
        self.read_version = render(sql.READ_VERSION)
        self.lock = render(sql.LOCK)
        self.create_schema = render(sql.CREATE_SCHEMA)
        self.create_version_table = render(sql.CREATE_VERSION_TABLE)
        self.write_version = render(sql.WRITE_VERSION)
        self.load = render(sql.LOAD)
        self.read_header = render(sql.READ_HEADER)
        self.commit = render(sql.COMMIT)
        self.read_messages = render(sql.READ_MESSAGES)
        self.read_vectors = render(sql.READ_VECTORS)
        self.read_vectors_at = render(sql.READ_VECTORS_AT)
        self.delete = render(sql.DELETE)
        self.rename = render(sql.RENAME)
        self.user_sessions = render(sql.USER_SESSIONS)
        self.forget_user = render(sql.FORGET_USER)
        self.session_ids = render(sql.SESSION_IDS)
        self.count_records = render(sql.COUNT_RECORDS)
        self.purge_batch = render(sql.PURGE_BATCH)
        self.purge_state = render(sql.PURGE_STATE)
        self.listen = render(sql.LISTEN)
        self.user_live = render(sql.USER_LIVE)
        self.drop_orphan_user = render(sql.DROP_ORPHAN_USER)
        self.purge_users = render(sql.PURGE_USERS)


@dataclass(frozen=True, slots=True)
class Settings:
    """A postgresql:// URL and Store options, checked: what the shells need to connect."""

    conninfo: str
    target: str
    """host:port/dbname, for error messages: never the password."""
    schema: str = DEFAULT_SCHEMA
    pool_min_size: int = 1
    pool_max_size: int = 10
    pool_timeout: float = 5.0
    connect_timeout: float = 2.0
    notify: bool = True
    create: bool = True
    """False: use only a schema statemw already made; else ConfigurationError, nothing made."""
    sql: Sql = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sql", Sql(self.schema))

    @property
    def connect_kwargs(self) -> dict[str, Any]:
        # libpq reads whole seconds; 2 is its smallest useful value
        return {"autocommit": True, "connect_timeout": max(2, round(self.connect_timeout))}


def settings(url: str, options: dict[str, Any]) -> Settings:
    """Split statemw's own options (schema, pool sizes, timeouts) from what libpq reads."""
    from psycopg.conninfo import conninfo_to_dict

    base, _, query = url.partition("?")
    ours: dict[str, Any] = {}
    libpq: list[tuple[str, str]] = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key in _OPTIONS:
            ours[key] = value
        else:
            libpq.append((key, value))
    ours.update(options)
    unknown = set(ours) - set(_OPTIONS)
    if unknown:
        raise ConfigurationError(
            f"unknown PostgreSQL option(s) {sorted(unknown)}: use " + ", ".join(sorted(_OPTIONS))
        )
    values: dict[str, Any] = {}
    for key, value in ours.items():
        kind = _OPTIONS[key]
        try:
            if kind is bool and isinstance(value, str):
                values[key] = value.lower() not in ("0", "false", "no", "off")
            else:
                values[key] = kind(value)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"PostgreSQL option {key}={value!r}: {exc}") from exc
    schema = values.get("schema", DEFAULT_SCHEMA)
    if not _SCHEMA_NAME.fullmatch(schema):
        raise ConfigurationError(
            f"schema must be a lower-case SQL name (a-z, 0-9, _; 63 at most), got {schema!r}"
        )
    conninfo = base + ("?" + urlencode(libpq, quote_via=quote) if libpq else "")
    try:
        parts = conninfo_to_dict(conninfo)
    except Exception:  # psycopg.ProgrammingError: libpq could not parse it
        # libpq's message quotes the URL, password and all: neither it nor its cause goes on
        raise ConfigurationError(
            "bad PostgreSQL URL: libpq could not parse it (check the host, the port and the "
            "percent-encoding of the user name and password)"
        ) from None
    host = str(parts.get("host") or "localhost")
    port = str(parts.get("port") or "5432")
    if not all(p.isdigit() and 0 < int(p) < 65536 for p in port.split(",")):
        raise ConfigurationError(f"bad PostgreSQL URL: port {port!r} is not a TCP port")
    target = f"{host}:{port}/{parts.get('dbname') or parts.get('user') or ''}"
    return Settings(conninfo=conninfo, target=target, **values)


# -- rows -> records -------------------------------------------------------------------------------

HEADER_WIDTH = 19


def parse_header(row: tuple[Any, ...]) -> SessionHeader:
    """A header from the 19 header columns (postgres_sql.header_select)."""
    sid = str(row[0])
    try:
        (_, user_id, created_at, updated_at, expires_at, revision, count, tokens) = row[:8]
        (s_value, s_upto, s_covered, s_tokens, children, lead) = row[8:14]
        keys, values, updated, expires, confirms = (v or [] for v in row[14:19])
        if not len(keys) == len(values) == len(updated) == len(expires) == len(confirms):
            raise ValueError("state columns of different lengths")
        return SessionHeader(
            session_id=sid,
            user_id=user_id,
            created_at=float(created_at),
            updated_at=float(updated_at),
            expires_at=None if expires_at is None else float(expires_at),
            revision=int(revision),
            message_count=int(count),
            token_total=int(tokens),
            summary=None
            if s_value is None
            else Summary(bytes(s_value), int(s_upto), int(s_covered), int(s_tokens)),
            children=list(children or []),
            state={
                k: Entry(
                    bytes(v),
                    float(u),
                    None if e is None else float(e),
                    None if c is None else float(c),
                )
                for k, v, u, e, c in zip(keys, values, updated, expires, confirms, strict=True)
            },
            lead=None if lead is None else int(lead),
        )
    except (TypeError, ValueError) as exc:
        raise CorruptRecord(sid, f"bad session row ({exc})") from exc


def _live(header: SessionHeader | None, now: float) -> SessionHeader | None:
    return header if header is not None and header.live(now) else None


def parse_change(session_id: str, payload: str) -> Change:
    """A NOTIFY payload the commit function sent: "<revision>\\n<count>\\n<json keys>"."""
    if payload == "deleted":
        return Change(session_id, 0, 0, deleted=True)
    revision, count, keys = payload.split("\n", 2)
    return Change(session_id, int(revision), int(count), tuple(json.loads(keys)))


def changed_keys(delta: Delta) -> str:
    """The changed key names for the NOTIFY payload, as many as fit its size limit."""
    keys = sorted(set(delta.set) | set(delta.delete))
    text = json.dumps(keys)
    while len(text.encode()) > NOTIFY_KEYS_BYTES:
        keys = keys[: len(keys) // 2]
        text = json.dumps(keys)
    return text


# -- the schema ------------------------------------------------------------------------------------


def ensure_schema_op(q: Sql, *, create: bool = True, where: str = "") -> Op[None]:
    """Create the schema on first use, or migrate it in place to SCHEMA_VERSION.

    `create=False` (the CLI's commands that look into a store): a schema statemw never made is
    ConfigurationError naming `where` (host:port/db) and the schema, and nothing is created."""
    [(schema_exists, table_exists)] = yield Query(q.probe)
    if not create and not table_exists:
        why = "has no statemw tables" if schema_exists else "does not exist"
        raise ConfigurationError(f"no store at postgres {where}: schema {q.schema!r} {why}")
    version = 0
    if table_exists:
        rows = yield Query(q.read_version)
        version = int(rows[0][0]) if rows else 0
    if version == sql.SCHEMA_VERSION:
        return None
    if version > sql.SCHEMA_VERSION:
        raise ConfigurationError(
            f"PostgreSQL schema {q.schema!r} is at version {version}, newer than this statemw's "
            f"{sql.SCHEMA_VERSION}: upgrade statemw"
        )
    yield Query(b"BEGIN")
    yield Query(q.lock)  # one process migrates; the others wait here, then find it done
    if not schema_exists:
        yield Query(q.create_schema)
    yield Query(q.create_version_table)
    rows = yield Query(q.read_version)
    version = int(rows[0][0]) if rows else 0
    for target in range(version + 1, sql.SCHEMA_VERSION + 1):
        for statement in q.migrations[target]:
            yield Query(statement)
    yield Query(q.write_version, {"version": sql.SCHEMA_VERSION})
    yield Query(b"COMMIT")
    return None


# -- operations ------------------------------------------------------------------------------------


def load_op(q: Sql, session_id: str, window: int, now: float) -> Op[Snapshot | None]:
    """Header, window, parents' and the user's headers: one statement."""
    parents = [] if session_id.startswith(USER_PREFIX) else parent_ids(session_id)
    rows = yield Query(
        q.load, {"sid": session_id, "ids": [session_id, *parents], "now": now, "window": window}
    )
    by_id = {str(row[0]): row for row in rows}
    row = by_id.get(session_id)
    if row is None:
        return None
    header = _live(parse_header(row), now)
    if header is None:
        return None
    start, bodies, lead = row[HEADER_WIDTH], row[HEADER_WIDTH + 1], row[HEADER_WIDTH + 2]
    parent_headers = [parse_header(by_id[p]) for p in parents if p in by_id]
    user = None
    if header.user_id is not None:
        user_row = by_id.get(USER_PREFIX + header.user_id)
        user = None if user_row is None else parse_header(user_row)
    return Snapshot(
        header,
        int(start),
        [bytes(b) for b in bodies],
        parent_headers,
        user,
        [bytes(b) for b in lead],
    )


def read_header_op(q: Sql, session_id: str, now: float) -> Op[SessionHeader | None]:
    rows = yield Query(q.read_header, {"sid": session_id, "now": now})
    header = _live(parse_header(rows[0]), now) if rows else None
    if header is not None and header.expires_at is None and session_id.startswith(USER_PREFIX):
        # a user's state without an expiry of its own: live while one of the user's sessions is
        user_id = session_id[len(USER_PREFIX) :]
        [(live,)] = yield Query(q.user_live, {"user_id": user_id, "now": now})
        if not live:
            return None
    return header


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)


def commit_params(delta: Delta, notify: bool) -> dict[str, Any]:
    create = delta.create
    summary = delta.summary
    return {
        "sid": delta.session_id,
        "now": delta.now,
        "created_at": None if create is None else create.created_at,
        "user_id": None if create is None else create.user_id,
        "expected": delta.expected_revision,
        "expires_at": delta.expires_at,
        "replace_log": delta.replace_log,
        "tokens": delta.append_tokens,
        "summary": None if summary is None else summary.value,
        "summary_upto": None if summary is None else summary.upto,
        "summary_covered": None if summary is None else summary.covered_tokens,
        "summary_tokens": None if summary is None else summary.tokens,
        "set_keys": list(delta.set),
        "set_values": [e.value for e in delta.set.values()],
        # float8[]: psycopg refuses a list mixing int and float (a confirm_after of 1 set now
        # beside one of 1.0 read back), so each is a float
        "set_updated": [float(e.updated_at) for e in delta.set.values()],
        "set_expires": [_float(e.expires_at) for e in delta.set.values()],
        "set_confirm": [_float(e.confirm_after) for e in delta.set.values()],
        "delete": list(delta.delete),
        "append": list(delta.append),
        "vector_pos": list(delta.vectors),
        "vectors": list(delta.vectors.values()),
        "notify": notify,
        "changed": changed_keys(delta) if notify else "",
        "lead_appended": delta.lead_appended,
    }


def commit_op(q: Sql, delta: Delta, notify: bool) -> Op[Committed]:
    """A save: one call of the commit function, which merges as records.apply_delta does and
    answers with the new counters (never the state: a save costs what changed)."""
    sid = delta.session_id
    create = delta.create
    top = "/" not in sid and not sid.startswith(USER_PREFIX)
    if top and create is not None and create.user_id is not None:
        # a user without a live session starts afresh
        yield Query(q.drop_orphan_user, {"user_id": create.user_id, "now": delta.now})
    [row] = yield Query(q.commit, commit_params(delta, notify))
    status, actual, revision, count, tokens, created_at, lead = row
    if status == "NOTFOUND":
        raise SessionNotFound(sid)
    if status == "CONFLICT":
        raise ConflictError(sid, delta.expected_revision or 0, int(actual))
    return Committed(
        int(revision), int(count), int(tokens), float(created_at), None if lead is None else lead
    )


def read_messages_op(q: Sql, session_id: str, start: int, stop: int) -> Op[list[bytes]]:
    start = max(start, 0)
    if stop <= start:
        return []
    rows = yield Query(q.read_messages, {"sid": session_id, "start": start, "stop": stop})
    return [bytes(r[0]) for r in rows]


def read_vectors_op(q: Sql, session_id: str, start: int, stop: int) -> Op[dict[int, bytes]]:
    if stop <= start:
        return {}
    rows = yield Query(q.read_vectors, {"sid": session_id, "start": start, "stop": stop})
    return {int(pos): bytes(vector) for pos, vector in rows}


def read_vectors_at_op(q: Sql, session_id: str, positions: Sequence[int]) -> Op[dict[int, bytes]]:
    if not positions:
        return {}
    rows = yield Query(q.read_vectors_at, {"sid": session_id, "positions": list(positions)})
    return {int(pos): bytes(vector) for pos, vector in rows}


def delete_op(q: Sql, session_id: str, notify: bool) -> Op[bool]:
    [(deleted,)] = yield Query(q.delete, {"sid": session_id, "notify": notify})
    return bool(deleted)


def rename_op(q: Sql, old_id: str, new_id: str, now: float) -> Op[None]:
    [(renamed,)] = yield Query(q.rename, {"old": old_id, "new": new_id, "now": now})
    if not renamed:
        raise SessionNotFound(old_id)
    return None


def user_sessions_op(q: Sql, user_id: str, now: float) -> Op[list[str]]:
    rows = yield Query(q.user_sessions, {"user_id": user_id, "now": now})
    return [str(r[0]) for r in rows]


def forget_user_op(q: Sql, user_id: str, notify: bool) -> Op[int]:
    [(removed,)] = yield Query(q.forget_user, {"user_id": user_id, "notify": notify})
    return int(removed)


def session_ids_op(q: Sql, after: str) -> Op[list[str]]:
    """One page of top-level session ids after `after` (in id order)."""
    rows = yield Query(q.session_ids, {"after": after, "limit": ID_PAGE})
    return [str(r[0]) for r in rows]


def purge_op(q: Sql, now: float, progress: Progress | None) -> Op[int]:
    """A sweep over the top-level records in batches (a transaction each), then every expired
    state key; `progress` hears how many records were looked at."""
    [(total,)] = yield Query(q.count_records)
    looked = removed = 0
    after = ""
    while True:
        [(seen, gone, last)] = yield Query(
            q.purge_batch, {"now": now, "after": after, "limit": PURGE_BATCH}
        )
        looked += int(seen)
        removed += int(gone)
        if progress is not None:  # one call per record, as the other backends make
            for done in range(looked - int(seen) + 1, looked + 1):
                progress(done, max(int(total), looked))
        if seen < PURGE_BATCH:
            break
        after = str(last)
    yield Query(q.purge_state, {"now": now})
    yield Query(q.purge_users, {"now": now})
    return removed


def listen_query(q: Sql, session_id: str) -> Query:
    """LISTEN on a session's channel (the server names it: postgres_sql's channel())."""
    return Query(q.listen, {"sid": session_id})
