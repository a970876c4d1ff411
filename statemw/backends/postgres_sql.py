"""Every SQL statement the PostgreSQL backend sends, as text: the schema, its functions, queries.

`{s}` stands for the quoted schema name (postgres_ops.Sql renders it). The schema is versioned:
MIGRATIONS[n] takes a schema from version n - 1 to n, and `schema_version` records where a
database is, so a later statemw adds MIGRATIONS[2] and upgrades in place on first use.

Layout (docs/postgres.md draws it):
    sessions   a row per session, sub-session and user record: the header's fields as columns
    state      a row per state key: (sid, key) -> encoded value, updated_at, expires_at,
               confirm_after (version 2)
    messages   a row per message: (sid, pos) -> encoded message; the primary key serves
               "the last N of a session" as an index range scan
    vectors    a row per cached embedding: (sid, pos) -> encoded vector
Sub-sessions are rows whose id is "<parent>/<name>"; ids are compared bytewise (COLLATE "C"),
so a session's whole tree is the id itself plus the range ("<id>/", "<id>0").

One module, past 400 lines, because it is text: every statement next to the schema it reads,
so a migration and the queries it changes are read together.
"""

from __future__ import annotations

SCHEMA_VERSION = 2

# Every read returns a header as these 19 columns (postgres_ops.parse_header reads them): sid,
# user_id, created_at, updated_at, expires_at, revision, message_count, token_total, summary,
# summary_upto, summary_covered, summary_tokens, children, lead, then the live state as five
# arrays (keys, values, updated_at, expires_at, confirm_after).


def header_select(now: str, where: str) -> str:
    """SELECT the header columns (and the live state keys, aggregated) of the rows `where`
    picks, as of `now`. Written into each statement that reads headers rather than called as a
    SQL function: such a function is planned again on every call unless it can be inlined."""
    return f"""
    SELECT h.sid, h.user_id, h.created_at, h.updated_at, h.expires_at, h.revision,
           h.message_count, h.token_total, h.summary, h.summary_upto, h.summary_covered,
           h.summary_tokens, h.children, h.lead, st.keys, st.vals, st.upd, st.exp, st.chk
    FROM {{s}}.sessions h
    LEFT JOIN LATERAL (
        SELECT array_agg(k.key ORDER BY k.seq) AS keys, array_agg(k.value ORDER BY k.seq) AS vals,
               array_agg(k.updated_at ORDER BY k.seq) AS upd,
               array_agg(k.expires_at ORDER BY k.seq) AS exp,
               array_agg(k.confirm_after ORDER BY k.seq) AS chk
        FROM {{s}}.state k
        WHERE k.sid = h.sid AND (k.expires_at IS NULL OR k.expires_at > {now})
    ) st ON true
    WHERE {where}"""


_V1_TABLES = r"""
CREATE TABLE {s}.sessions (
    sid             text COLLATE "C" PRIMARY KEY,
    seq             bigint GENERATED ALWAYS AS IDENTITY,
    user_id         text,
    created_at      float8 NOT NULL,
    updated_at      float8 NOT NULL,
    expires_at      float8,
    revision        bigint NOT NULL DEFAULT 0,
    message_count   bigint NOT NULL DEFAULT 0,
    token_total     bigint NOT NULL DEFAULT 0,
    summary         bytea,
    summary_upto    bigint,
    summary_covered bigint,
    summary_tokens  bigint,
    children        text[] NOT NULL DEFAULT '{{}}',
    lead            integer DEFAULT 0,  -- leading system messages (at most 8); NULL: unknown
    top             boolean NOT NULL
                    GENERATED ALWAYS AS (strpos(sid, '/') = 0 AND left(sid, 3) <> '~u:') STORED
);
-- Only columns a save never changes are indexed, and pages keep room (fillfactor), so the
-- header UPDATE of every save is a HOT update: no index entry is written per turn.
ALTER TABLE {s}.sessions SET (fillfactor = 80);
CREATE INDEX sessions_by_user ON {s}.sessions (user_id, created_at, seq) WHERE top;

CREATE TABLE {s}.state (
    sid         text COLLATE "C" NOT NULL
                REFERENCES {s}.sessions ON DELETE CASCADE ON UPDATE CASCADE,
    key         text NOT NULL,
    seq         bigint GENERATED ALWAYS AS IDENTITY,
    value       bytea NOT NULL,
    updated_at  float8 NOT NULL,
    expires_at  float8,
    PRIMARY KEY (sid, key)
);
CREATE INDEX state_by_expiry ON {s}.state (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE {s}.messages (
    sid   text COLLATE "C" NOT NULL
          REFERENCES {s}.sessions ON DELETE CASCADE ON UPDATE CASCADE,
    pos   bigint NOT NULL,
    body  bytea NOT NULL,
    PRIMARY KEY (sid, pos)
);

CREATE TABLE {s}.vectors (
    sid     text COLLATE "C" NOT NULL
            REFERENCES {s}.sessions ON DELETE CASCADE ON UPDATE CASCADE,
    pos     bigint NOT NULL,
    vector  bytea NOT NULL,
    PRIMARY KEY (sid, pos)
);
"""

_COMMIT_V1 = r"""
-- A save: the merge of records.apply_delta, done where the data is, in one statement's
-- transaction. The session row is locked first (FOR UPDATE), so concurrent saves of one session
-- queue up here and each appends at the count the previous one committed.
CREATE FUNCTION {s}.commit(
    p_sid text, p_now float8, p_created_at float8, p_user_id text, p_expected bigint,
    p_expires_at float8, p_replace_log boolean, p_tokens bigint,
    p_summary bytea, p_summary_upto bigint, p_summary_covered bigint, p_summary_tokens bigint,
    p_set_keys text[], p_set_values bytea[], p_set_updated float8[], p_set_expires float8[],
    p_delete text[], p_append bytea[], p_vector_pos bigint[], p_vectors bytea[],
    p_notify boolean, p_changed text, p_lead_appended integer
) RETURNS TABLE (o_status text, o_actual bigint, o_revision bigint, o_count bigint,
                 o_tokens bigint, o_created_at float8, o_lead integer)
LANGUAGE plpgsql
-- Every statement here is a primary-key lookup: a generic plan is always right, and re-planning
-- each statement on each call (what "auto" may keep doing) costs more than running it.
SET plan_cache_mode = force_generic_plan
AS $fn$
DECLARE
    cur      {s}.sessions%ROWTYPE;
    v_parent text;
    v_name   text;
    v_new    boolean := false;
    v_count  bigint;
    v_tokens bigint;
    v_rev    bigint;
    v_lead   integer;
BEGIN
    IF strpos(p_sid, '/') > 0 AND left(p_sid, 3) <> '~u:' THEN
        v_parent := left(p_sid, length(p_sid) - strpos(reverse(p_sid), '/'));
        v_name := right(p_sid, strpos(reverse(p_sid), '/') - 1);
        IF p_created_at IS NOT NULL THEN  -- locks go parent before child, as delete takes them
            PERFORM 1 FROM {s}.sessions t WHERE t.sid = v_parent FOR UPDATE;
        END IF;
    END IF;

    SELECT * INTO cur FROM {s}.sessions t WHERE t.sid = p_sid FOR UPDATE;
    IF FOUND AND cur.expires_at IS NOT NULL AND cur.expires_at <= p_now THEN
        -- expired, not yet purged: gone for the contract; a creating save starts it afresh
        IF p_created_at IS NULL THEN
            RETURN QUERY SELECT * FROM {s}.refused('NOTFOUND', 0); RETURN;
        END IF;
        IF p_expected IS NOT NULL AND p_expected <> 0 THEN
            RETURN QUERY SELECT * FROM {s}.refused('CONFLICT', 0); RETURN;
        END IF;
        DELETE FROM {s}.sessions t WHERE t.sid > p_sid || '/' AND t.sid < p_sid || '0';
        DELETE FROM {s}.state t WHERE t.sid = p_sid;
        DELETE FROM {s}.messages t WHERE t.sid = p_sid;
        DELETE FROM {s}.vectors t WHERE t.sid = p_sid;
        UPDATE {s}.sessions t
        SET user_id = p_user_id, created_at = p_created_at, revision = 0, message_count = 0,
            token_total = 0, summary = NULL, summary_upto = NULL, summary_covered = NULL,
            summary_tokens = NULL, children = '{{}}', lead = 0
        WHERE t.sid = p_sid
        RETURNING * INTO cur;
    ELSIF NOT FOUND THEN
        IF p_created_at IS NULL THEN
            RETURN QUERY SELECT * FROM {s}.refused('NOTFOUND', 0); RETURN;
        END IF;
        IF p_expected IS NOT NULL AND p_expected <> 0 THEN
            RETURN QUERY SELECT * FROM {s}.refused('CONFLICT', 0); RETURN;
        END IF;
        INSERT INTO {s}.sessions (sid, user_id, created_at, updated_at)
        VALUES (p_sid, p_user_id, p_created_at, p_now)
        ON CONFLICT (sid) DO NOTHING
        RETURNING * INTO cur;
        IF FOUND THEN
            v_new := true;
        ELSE  -- another save created it a moment ago: merge into that one, as into any other
            SELECT * INTO cur FROM {s}.sessions t WHERE t.sid = p_sid FOR UPDATE;
        END IF;
    END IF;
    IF p_expected IS NOT NULL AND p_expected <> cur.revision THEN
        RETURN QUERY SELECT * FROM {s}.refused('CONFLICT', cur.revision); RETURN;
    END IF;

    -- state: expired keys go, then deletes, then sets (the same key: last write wins)
    DELETE FROM {s}.state t WHERE t.sid = p_sid AND t.expires_at <= p_now;
    IF cardinality(p_delete) > 0 THEN
        DELETE FROM {s}.state t WHERE t.sid = p_sid AND t.key = ANY(p_delete);
    END IF;
    IF cardinality(p_set_keys) > 0 THEN
        INSERT INTO {s}.state AS t (sid, key, value, updated_at, expires_at)
        SELECT p_sid, u.k, u.v, u.upd, u.exp
        FROM unnest(p_set_keys, p_set_values, p_set_updated, p_set_expires)
             WITH ORDINALITY AS u(k, v, upd, exp, n)
        ORDER BY u.n
        ON CONFLICT (sid, key) DO UPDATE
        SET value = excluded.value, updated_at = excluded.updated_at,
            expires_at = excluded.expires_at;
    END IF;

    -- messages: appends take the next positions after what is committed
    v_count := cur.message_count;
    v_tokens := cur.token_total;
    v_lead := cur.lead;
    IF p_replace_log THEN
        DELETE FROM {s}.messages t WHERE t.sid = p_sid;
        DELETE FROM {s}.vectors t WHERE t.sid = p_sid;
        v_count := 0;
        v_tokens := 0;
        v_lead := 0;
        cur.summary := NULL;
        cur.summary_upto := NULL;
        cur.summary_covered := NULL;
        cur.summary_tokens := NULL;
    END IF;
    -- the leading system prompt grows while every message so far is a system message
    IF v_lead IS NOT NULL AND v_lead >= v_count AND v_count < 8 THEN
        v_lead := least(v_count + least(p_lead_appended, cardinality(p_append)), 8);
    END IF;
    IF cardinality(p_append) > 0 THEN
        INSERT INTO {s}.messages (sid, pos, body)
        SELECT p_sid, v_count + u.n - 1, u.body
        FROM unnest(p_append) WITH ORDINALITY AS u(body, n);
        v_count := v_count + cardinality(p_append);
    END IF;
    IF p_summary IS NOT NULL AND (cur.summary_upto IS NULL OR p_summary_upto >= cur.summary_upto)
    THEN
        cur.summary := p_summary;
        cur.summary_upto := p_summary_upto;
        cur.summary_covered := p_summary_covered;
        cur.summary_tokens := p_summary_tokens;
    END IF;
    IF cardinality(p_vector_pos) > 0 THEN
        INSERT INTO {s}.vectors AS t (sid, pos, vector)
        SELECT p_sid, u.pos, u.vector FROM unnest(p_vector_pos, p_vectors) AS u(pos, vector)
        ON CONFLICT (sid, pos) DO UPDATE SET vector = excluded.vector;
    END IF;

    v_rev := cur.revision + 1;
    UPDATE {s}.sessions t
    SET updated_at = p_now, expires_at = p_expires_at, revision = v_rev,
        message_count = v_count, token_total = v_tokens + p_tokens, lead = v_lead,
        summary = cur.summary, summary_upto = cur.summary_upto,
        summary_covered = cur.summary_covered, summary_tokens = cur.summary_tokens
    WHERE t.sid = p_sid;

    IF v_new AND v_parent IS NOT NULL THEN
        UPDATE {s}.sessions t SET children = array_append(t.children, v_name)
        WHERE t.sid = v_parent AND NOT (v_name = ANY(t.children));
    END IF;
    IF p_notify THEN  -- delivered when the transaction commits, never before
        PERFORM pg_notify({s}.channel(p_sid), v_rev || E'\n' || v_count || E'\n' || p_changed);
    END IF;
    -- the counters only: the state is what the saver already holds (O(what changed), not O(state))
    RETURN QUERY SELECT 'OK'::text, v_rev, v_rev, v_count, v_tokens + p_tokens, cur.created_at,
        v_lead;
END
$fn$;

"""

_V1_FUNCTIONS = r"""
CREATE FUNCTION {s}.channel(p_sid text) RETURNS text
LANGUAGE sql IMMUTABLE AS $fn$
    -- LISTEN/NOTIFY channel of a session: an identifier under 64 bytes, distinct per schema
    SELECT 'statemw_' || md5({schema_literal} || ':' || p_sid)
$fn$;

CREATE FUNCTION {s}.listen(p_sid text) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    EXECUTE format('LISTEN %I', {s}.channel(p_sid));
END
$fn$;

-- Remove a session with its sub-sessions (state, messages and vectors go by ON DELETE CASCADE).
CREATE FUNCTION {s}.remove_tree(p_sid text) RETURNS void
LANGUAGE sql AS $fn$
    DELETE FROM {s}.sessions t
    WHERE t.sid = p_sid OR (t.sid > p_sid || '/' AND t.sid < p_sid || '0')
$fn$;

-- What commit answers when it writes nothing: the status and the revision it found.
CREATE FUNCTION {s}.refused(p_status text, p_actual bigint)
RETURNS TABLE (o_status text, o_actual bigint, o_revision bigint, o_count bigint,
               o_tokens bigint, o_created_at float8, o_lead integer)
LANGUAGE sql IMMUTABLE AS $fn$
    SELECT p_status, p_actual, 0::bigint, 0::bigint, 0::bigint, 0::float8, 0
$fn$;

CREATE FUNCTION {s}.delete_session(p_sid text, p_notify boolean) RETURNS boolean
LANGUAGE plpgsql AS $fn$
DECLARE
    v_parent text;
BEGIN
    IF strpos(p_sid, '/') > 0 AND left(p_sid, 3) <> '~u:' THEN
        v_parent := left(p_sid, length(p_sid) - strpos(reverse(p_sid), '/'));
        PERFORM 1 FROM {s}.sessions t WHERE t.sid = v_parent FOR UPDATE;
    END IF;
    PERFORM 1 FROM {s}.sessions t WHERE t.sid = p_sid FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM {s}.remove_tree(p_sid);
    IF v_parent IS NOT NULL THEN
        UPDATE {s}.sessions t
        SET children = array_remove(t.children, right(p_sid, strpos(reverse(p_sid), '/') - 1))
        WHERE t.sid = v_parent;
    END IF;
    IF p_notify THEN
        PERFORM pg_notify({s}.channel(p_sid), 'deleted');
    END IF;
    RETURN true;
END
$fn$;

-- Move a live session and its sub-sessions to a new id; ON UPDATE CASCADE moves their rows.
CREATE FUNCTION {s}.rename_session(p_old text, p_new text, p_now float8) RETURNS boolean
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM 1 FROM {s}.sessions t
    WHERE t.sid = p_old AND (t.expires_at IS NULL OR t.expires_at > p_now) FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    UPDATE {s}.sessions t SET sid = p_new || substr(t.sid, length(p_old) + 1)
    WHERE t.sid = p_old OR (t.sid > p_old || '/' AND t.sid < p_old || '0');
    RETURN true;
END
$fn$;

CREATE FUNCTION {s}.forget_user(p_user text, p_notify boolean) RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
    v_roots text[];
    v_root  text;
BEGIN
    v_roots := ARRAY(SELECT t.sid FROM {s}.sessions t WHERE t.top AND t.user_id = p_user
                     ORDER BY t.sid FOR UPDATE);
    FOREACH v_root IN ARRAY v_roots LOOP
        PERFORM {s}.remove_tree(v_root);
        IF p_notify THEN
            PERFORM pg_notify({s}.channel(v_root), 'deleted');
        END IF;
    END LOOP;
    PERFORM {s}.remove_tree('~u:' || p_user);
    RETURN cardinality(v_roots);
END
$fn$;

-- One step of purge's sweep: the next top-level records after p_after (in id order); those
-- expired go with their sub-sessions. A session being saved right now is skipped (SKIP LOCKED)
-- and looked at again by the next purge.
CREATE FUNCTION {s}.purge_batch(p_now float8, p_after text, p_limit integer)
RETURNS TABLE (o_looked integer, o_removed integer, o_last text)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_roots text[];
    v_dead  text[];
    v_root  text;
BEGIN
    v_roots := ARRAY(SELECT t.sid FROM {s}.sessions t
                     WHERE strpos(t.sid, '/') = 0 AND t.sid > p_after
                     ORDER BY t.sid LIMIT p_limit);
    v_dead := ARRAY(SELECT t.sid FROM {s}.sessions t
                    WHERE t.sid = ANY(v_roots) AND t.expires_at <= p_now
                    ORDER BY t.sid FOR UPDATE SKIP LOCKED);
    FOREACH v_root IN ARRAY v_dead LOOP
        PERFORM {s}.remove_tree(v_root);
    END LOOP;
    RETURN QUERY SELECT cardinality(v_roots), cardinality(v_dead), v_roots[cardinality(v_roots)];
END
$fn$;
"""


def _swap(text: str, old: str, new: str) -> str:
    """`text` with its one occurrence of `old` replaced (a migration derived from an earlier
    version's text fails at import, not in a database, if that text moves)."""
    if text.count(old) != 1:
        raise AssertionError(f"expected one {old!r} in the SQL being derived")
    return text.replace(old, new)


# Version 2: a state key may carry confirm_after (seconds after updated_at when it is due for a
# check). The column is NULL for every row written before, which reads as "never stale"; commit
# takes one more array, in the last position.
_COMMIT_ARGS_V1 = (
    "text, float8, float8, text, bigint, float8, boolean, bigint, bytea, bigint, bigint, bigint, "
    "text[], bytea[], float8[], float8[], text[], bytea[], bigint[], bytea[], boolean, text, "
    "integer"
)
_COMMIT_V2 = _COMMIT_V1
for _old, _new in (
    (
        "p_notify boolean, p_changed text, p_lead_appended integer\n",
        "p_notify boolean, p_changed text, p_lead_appended integer, p_set_confirm float8[]\n",
    ),
    (
        "(sid, key, value, updated_at, expires_at)",
        "(sid, key, value, updated_at, expires_at, confirm_after)",
    ),
    ("SELECT p_sid, u.k, u.v, u.upd, u.exp\n", "SELECT p_sid, u.k, u.v, u.upd, u.exp, u.chk\n"),
    (
        "unnest(p_set_keys, p_set_values, p_set_updated, p_set_expires)\n"
        "             WITH ORDINALITY AS u(k, v, upd, exp, n)",
        "unnest(p_set_keys, p_set_values, p_set_updated, p_set_expires, p_set_confirm)\n"
        "             WITH ORDINALITY AS u(k, v, upd, exp, chk, n)",
    ),
    (
        "expires_at = excluded.expires_at;",
        "expires_at = excluded.expires_at, confirm_after = excluded.confirm_after;",
    ),
):
    _COMMIT_V2 = _swap(_COMMIT_V2, _old, _new)

MIGRATIONS: dict[int, list[str]] = {
    1: [
        _V1_TABLES,
        _V1_FUNCTIONS,
        _COMMIT_V1,
    ],
    2: [
        "ALTER TABLE {s}.state ADD COLUMN confirm_after float8",
        f"DROP FUNCTION {{s}}.commit({_COMMIT_ARGS_V1})",
        _COMMIT_V2,
    ],
}
"""Statements taking the schema from version n - 1 to n, run in one transaction."""

# -- the schema's bookkeeping ----------------------------------------------------------------------

PROBE = (
    "SELECT to_regnamespace({schema_literal}) IS NOT NULL, "
    "to_regclass({schema_literal} || '.schema_version') IS NOT NULL"
)
READ_VERSION = "SELECT version FROM {s}.schema_version"
LOCK = "SELECT pg_advisory_xact_lock(hashtext('statemw schema ' || {schema_literal}))"
CREATE_SCHEMA = "CREATE SCHEMA IF NOT EXISTS {s}"
CREATE_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS {s}.schema_version ("
    "only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row), "
    "version integer NOT NULL, migrated_at timestamptz NOT NULL DEFAULT now())"
)
WRITE_VERSION = (
    "INSERT INTO {s}.schema_version (version) VALUES (%(version)s::integer) "
    "ON CONFLICT (only_row) DO UPDATE SET version = excluded.version, migrated_at = now()"
)

# -- the operations' statements --------------------------------------------------------------------

_LOAD_WHERE = """h.sid = ANY(%(ids)s::text[] ||
        (SELECT '~u:' || u.user_id FROM {s}.sessions u WHERE u.sid = %(sid)s::text))"""

LOAD = f"""
SELECT h.*, w.start, w.bodies, w.lead_bodies
FROM ({header_select("%(now)s::float8", _LOAD_WHERE)}) h
LEFT JOIN LATERAL (
    SELECT g.start, ARRAY(
        SELECT m.body FROM {{s}}.messages m
        WHERE m.sid = h.sid AND m.pos >= g.start AND m.pos < h.message_count ORDER BY m.pos
    ) AS bodies, ARRAY(
        SELECT m.body FROM {{s}}.messages m
        WHERE m.sid = h.sid AND m.pos < least(coalesce(h.lead, 0), g.start) ORDER BY m.pos
    ) AS lead_bodies
    FROM (SELECT greatest(h.message_count - %(window)s::bigint, coalesce(h.summary_upto, 0), 0)
          AS start) g
    WHERE h.sid = %(sid)s::text
) w ON true
"""

READ_HEADER = header_select("%(now)s::float8", "h.sid = %(sid)s::text")

COMMIT = """
SELECT c.o_status, c.o_actual, c.o_revision, c.o_count, c.o_tokens, c.o_created_at, c.o_lead
FROM {s}.commit(
    %(sid)s::text, %(now)s::float8, %(created_at)s::float8, %(user_id)s::text,
    %(expected)s::bigint, %(expires_at)s::float8, %(replace_log)s::boolean, %(tokens)s::bigint,
    %(summary)s::bytea, %(summary_upto)s::bigint, %(summary_covered)s::bigint,
    %(summary_tokens)s::bigint, %(set_keys)s::text[], %(set_values)s::bytea[],
    %(set_updated)s::float8[], %(set_expires)s::float8[], %(delete)s::text[],
    %(append)s::bytea[], %(vector_pos)s::bigint[], %(vectors)s::bytea[],
    %(notify)s::boolean, %(changed)s::text, %(lead_appended)s::integer,
    %(set_confirm)s::float8[]) c
"""

READ_MESSAGES = """
SELECT m.body FROM {s}.messages m
WHERE m.sid = %(sid)s::text AND m.pos >= %(start)s::bigint AND m.pos < %(stop)s::bigint
ORDER BY m.pos
"""

READ_VECTORS = """
SELECT v.pos, v.vector FROM {s}.vectors v
WHERE v.sid = %(sid)s::text AND v.pos >= %(start)s::bigint AND v.pos < %(stop)s::bigint
"""

READ_VECTORS_AT = """
SELECT v.pos, v.vector FROM {s}.vectors v
WHERE v.sid = %(sid)s::text AND v.pos = ANY(%(positions)s::bigint[])
"""

DELETE = "SELECT {s}.delete_session(%(sid)s::text, %(notify)s::boolean)"

RENAME = "SELECT {s}.rename_session(%(old)s::text, %(new)s::text, %(now)s::float8)"

USER_SESSIONS = """
SELECT t.sid FROM {s}.sessions t
WHERE t.top AND t.user_id = %(user_id)s::text
  AND (t.expires_at IS NULL OR t.expires_at > %(now)s::float8)
ORDER BY t.created_at, t.seq
"""

FORGET_USER = "SELECT {s}.forget_user(%(user_id)s::text, %(notify)s::boolean)"

SESSION_IDS = """
SELECT t.sid FROM {s}.sessions t WHERE t.top AND t.sid > %(after)s::text
ORDER BY t.sid LIMIT %(limit)s::integer
"""

COUNT_RECORDS = "SELECT count(*) FROM {s}.sessions t WHERE strpos(t.sid, '/') = 0"

PURGE_BATCH = """
SELECT * FROM {s}.purge_batch(%(now)s::float8, %(after)s::text, %(limit)s::integer)
"""

PURGE_STATE = "DELETE FROM {s}.state t WHERE t.expires_at <= %(now)s::float8"

LISTEN = "SELECT {s}.listen(%(sid)s::text)"

# A user's state without an expiry of its own (Store.user_ttl) lives while one of the user's
# sessions does; these three statements hold to that (no schema change: they are plain SQL).
_USER_LIVE = """EXISTS (
    SELECT 1 FROM {s}.sessions t
    WHERE t.top AND t.user_id = {user}
      AND (t.expires_at IS NULL OR t.expires_at > %(now)s::float8))"""

USER_LIVE = "SELECT " + _USER_LIVE.format(s="{s}", user="%(user_id)s::text")

# Before a user's new session is created: a user without a live session starts afresh.
DROP_ORPHAN_USER = f"""
DELETE FROM {{s}}.sessions u
WHERE u.sid = '~u:' || %(user_id)s::text
  AND (u.expires_at IS NULL OR u.expires_at <= %(now)s::float8)
  AND NOT {_USER_LIVE.format(s="{s}", user="%(user_id)s::text")}
"""

PURGE_USERS = f"""
DELETE FROM {{s}}.sessions u
WHERE left(u.sid, 3) = '~u:' AND (u.expires_at <= %(now)s::float8 OR (u.expires_at IS NULL
  AND NOT {_USER_LIVE.format(s="{s}", user="substr(u.sid, 4)")}))
"""
