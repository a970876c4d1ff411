"""The Lua scripts the Redis backend runs: each one is a whole operation, atomic on the server.

Key layout (see docs/redis.md); every key of a session tree carries the root's hash tag:
    <P>{<root>}:h:<sid>   hash: meta fields "_..." + one field "s:<key>" per state key
    <P>{<root>}:m:<sid>   list of encoded messages (RPUSH appends, LRANGE reads a window)
    <P>{<root>}:v:<sid>   hash: message position -> cached vector
    <P>{<root>}:x:<sid>   sorted set: state key -> its expires_at (only keys with a TTL)
    <P>{~u:<uid>}:i       sorted set: the user's top-level session ids by creation time
    <P>{~u:<uid>}:f       cluster only: when forget_user last ran for the user (server time)
Every key carries a TTL: a session's keys its own expiry (plus a slack); a user's index and
record (unless it has an expiry of its own, Store.user_ttl) the longest of the user's sessions'.
Timestamps travel as the strings Python wrote (repr of a float) and are stored unchanged, so no
precision is lost in Lua; Lua only compares them with tonumber().

One module, past 400 lines, because the scripts share helpers (prepended as text) and one key
layout; ops.py, which builds their arguments, is the other half.
"""

from __future__ import annotations

# Shared helpers, prepended (as text) to the scripts that need them. The commit script defines
# the ones off its common path only in the branches that call them: each definition is a closure
# the server builds on every run.
_LIVE = r"""
local function live(h, now)
  local meta = redis.call('HMGET', h, '_v', '_ea')
  if not meta[1] then return false end
  return (not meta[2]) or tonumber(meta[2]) > now
end
"""

_HAS_CHILD = r"""
local function has_child(list, name)
  return string.find('/' .. list .. '/', '/' .. name .. '/', 1, true) ~= nil
end
"""

_INDEX_ADD = r"""
local function index_add(idx, sid, score)
  if redis.call('ZSCORE', idx, sid) then return end
  local last = redis.call('ZREVRANGE', idx, 0, 0, 'WITHSCORES')
  if last[2] and tonumber(last[2]) >= tonumber(score) then
    score = string.format('%.17g', tonumber(last[2]) + 0.001)
  end
  redis.call('ZADD', idx, score, sid)
end
"""

_REMOVE_TREE = r"""
-- Remove a session and its sub-sessions (all under the same tag, so the same slot).
local function remove_tree(base, sid)
  local h = base .. 'h:' .. sid
  if redis.call('EXISTS', h) == 0 then return false end
  local ch = redis.call('HGET', h, '_ch')
  if ch then
    for name in string.gmatch(ch, '[^/]+') do remove_tree(base, sid .. '/' .. name) end
  end
  redis.call('DEL', h, base .. 'm:' .. sid, base .. 'v:' .. sid, base .. 'x:' .. sid)
  return true
end
"""

_TOUCH = r"""
-- A user's record and index follow the user's sessions: each commit of a session extends their
-- TTL to at least the session's ('' for none). idx, uh, ux: the user's index, record, expiries.
-- The record (unless it has an expiry of its own) and its expiries only when they exist (its
-- "_v" and "_x" say so). PEXPIRE ... GT extends a TTL in one call; only when it did not (the
-- TTL is longer already, or there is none) does PTTL tell a key without a TTL, which gets one.
local function touch_keys(idx, uh, ux, pexpire)
  local keys = {idx}
  local rec = redis.call('HMGET', uh, '_v', '_ea', '_x')
  if not rec[2] then
    if rec[1] then keys[2] = uh end
    if rec[3] then keys[#keys + 1] = ux end
  end
  for _, k in ipairs(keys) do
    if pexpire == '' then redis.call('PERSIST', k)
    elseif redis.call('PEXPIRE', k, pexpire, 'GT') == 0 and redis.call('PTTL', k) == -1 then
      redis.call('PEXPIRE', k, pexpire)
    end
  end
end

-- The same, the names made from the key prefix P (standalone only: another slot).
local function touch_user(p, ref, pexpire)
  local ub = p .. '{~u:' .. ref .. '}:'
  touch_keys(ub .. 'i', ub .. 'h:~u:' .. ref, ub .. 'x:~u:' .. ref, pexpire)
end
"""

_DROP_ORPHAN = r"""
-- Before a user's new session joins the index: a user without a live session starts afresh,
-- so what is left of their state (unless it has an expiry of its own) goes first.
local function drop_orphan_user(p, ref, now)
  local ub = p .. '{~u:' .. ref .. '}:'
  local idx = ub .. 'i'
  for _, m in ipairs(redis.call('ZREVRANGE', idx, 0, -1)) do
    if live(p .. '{' .. m .. '}:h:' .. m, now) then return end
  end
  redis.call('DEL', idx)
  local ea = redis.call('HGET', ub .. 'h:~u:' .. ref, '_ea')
  if (not ea) or tonumber(ea) <= now then remove_tree(ub, '~u:' .. ref) end
end
"""

_UNLINK = r"""
local function unlink_child(ph, name)
  local ch = redis.call('HGET', ph, '_ch')
  if not ch or not has_child(ch, name) then return end
  local kept = {}
  for n in string.gmatch(ch, '[^/]+') do
    if n ~= name then kept[#kept + 1] = n end
  end
  if #kept == 0 then redis.call('HDEL', ph, '_ch')
  else redis.call('HSET', ph, '_ch', table.concat(kept, '/')) end
end
"""

_COMMON = _LIVE + _HAS_CHILD + _INDEX_ADD + _REMOVE_TREE + _TOUCH + _DROP_ORPHAN + _UNLINK

# KEYS: h, m, v, x, parent h (or h again), [user index (standalone only; a user record's own)]
# ARGV: one string of msgpack values (see ops.commit_op for their order, ops.pack_args for the
# form), unpacked into ARGV here: one value for redis-py to send and Redis to parse, instead of
# dozens. A turn costs HMGET, HSET, RPUSH, PEXPIRE x2, PUBLISH: the header's counters are read
# once and written back in the same HSET as the state keys, and the reply is the new counters,
# never the whole header (O(what changed)). The HSET writes only the meta fields that changed
# (the server pays per field and per number turned into a string), and a key that cannot exist
# (no messages, no vectors, no expiring keys) gets no PEXPIRE.
COMMIT = (
    r"""
local h, m, v, x, ph = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local ARGV = {cmsgpack.unpack(ARGV[1])}  -- values one after another (ops.pack_args) ...
if type(ARGV[1]) == 'table' then ARGV = ARGV[1] end  -- ... or, for a big delta, one array
local now = tonumber(ARGV[1])
local created_at, uid, expected, expires_at = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local replace_log, tokens, summary, summary_upto = ARGV[6], tonumber(ARGV[7]), ARGV[8], ARGV[9]
local child_name, channel, pexpire, changed = ARGV[10], ARGV[11], ARGV[12], ARGV[13]
local nset, ndel, napp, nvec = tonumber(ARGV[14]), tonumber(ARGV[15]), tonumber(ARGV[16]),
  tonumber(ARGV[17])
local sid, lead_appended = ARGV[18], tonumber(ARGV[19])
local user_prefix, follow, incarnation = ARGV[20], ARGV[21], ARGV[22]

local meta = redis.call('HMGET', h, '_v', '_ea', '_rev', '_mc', '_tt', '_lead', '_ca', '_x',
  '_vec', '_sumupto', '_uid', '_in')
local alive = meta[1] and ((not meta[2]) or tonumber(meta[2]) > now)
local created = false
local rev, mc, tt, lead, ca, hasx, hasv, sumupto
if not alive then
  if created_at == '' then return {'NOTFOUND'} end
  if expected ~= '' and tonumber(expected) ~= 0 then return {'CONFLICT', '0'} end
  if meta[1] then redis.call('DEL', h, m, v, x) end
  rev, mc, tt, lead, ca, hasx, hasv, sumupto = 0, 0, 0, 0, created_at, false, false, nil
  created = true
else
  rev, mc, tt = tonumber(meta[3]), tonumber(meta[4]), tonumber(meta[5])
  lead, ca, hasx, hasv = meta[6] and tonumber(meta[6]), meta[7], meta[8], meta[9]
  sumupto = meta[10] and tonumber(meta[10])
  if expected ~= '' and rev ~= tonumber(expected) then return {'CONFLICT', tostring(rev)} end
end
local hadx, hadv, lead0 = hasx, hasv, lead  -- what the header says now (created: nothing)

-- One command for a whole list of values, in slices: unpack() takes a few thousand at most.
local function each(cmd, key, list)
  local i = 1
  while i <= #list do
    local last = math.min(i + 999, #list)
    redis.call(cmd, key, unpack(list, i, last))
    i = last + 1
  end
end

-- state: drop expired keys, then deletes, then sets (last write wins per key)
if hasx then
  local dead = redis.call('ZRANGEBYSCORE', x, '-inf', ARGV[1])
  if #dead > 0 then
    for i, key in ipairs(dead) do dead[i] = 's:' .. key end
    each('HDEL', h, dead)
    redis.call('ZREMRANGEBYSCORE', x, '-inf', ARGV[1])
  end
end
local d = 23 + 3 * nset
if ndel > 0 then
  local names, keys = {}, {}
  for i = 1, ndel do
    keys[i] = ARGV[d]
    names[i] = 's:' .. ARGV[d]
    d = d + 1
  end
  each('HDEL', h, names)
  if hasx then each('ZREM', x, keys) end
end
local fields = {}
local timed, untimed  -- set keys with a TTL: [expires_at, key, ...]; without: [key, ...]
local s = 23
for _ = 1, nset do
  fields[#fields + 1] = 's:' .. ARGV[s]
  fields[#fields + 1] = ARGV[s + 1]
  if ARGV[s + 2] ~= '' then
    timed = timed or {}
    timed[#timed + 1] = ARGV[s + 2]
    timed[#timed + 1] = ARGV[s]
  else
    untimed = untimed or {}
    untimed[#untimed + 1] = ARGV[s]
  end
  s = s + 3
end
if timed then
  each('ZADD', x, timed)
  hasx = '1'
end
if untimed and hasx then each('ZREM', x, untimed) end  -- a key that had a TTL has none now

-- messages
local counted = created or napp > 0  -- _mc and _tt change
if replace_log == '1' then
  redis.call('DEL', m, v)
  mc, tt, lead, hasv, hadv, sumupto = 0, 0, 0, false, false, nil
  redis.call('HDEL', h, '_sum', '_sumupto', '_vec')
  counted = true
end
if lead and lead >= mc and mc < 8 then lead = math.min(mc + math.min(lead_appended, napp), 8) end
local a = d
local left = napp
while left > 0 do
  local take = math.min(left, 1000)
  mc = redis.call('RPUSH', m, unpack(ARGV, a, a + take - 1))
  a = a + take
  left = left - take
end
tt = tt + tokens
if summary ~= '' and ((not sumupto) or tonumber(summary_upto) >= sumupto) then
  fields[#fields + 1] = '_sum'
  fields[#fields + 1] = summary
  fields[#fields + 1] = '_sumupto'
  fields[#fields + 1] = summary_upto
end
if nvec > 0 then
  local vectors = {}
  for _ = 1, nvec do
    vectors[#vectors + 1] = ARGV[a]
    vectors[#vectors + 1] = ARGV[a + 1]
    a = a + 2
  end
  each('HSET', v, vectors)
  hasv = '1'
end

-- the header's meta fields: the revision and updated_at always, the rest when they change
rev = rev + 1
fields[#fields + 1] = '_rev'
fields[#fields + 1] = rev
fields[#fields + 1] = '_ua'
fields[#fields + 1] = ARGV[1]
if created then
  fields[#fields + 1] = '_in'
  fields[#fields + 1] = incarnation
elseif not meta[12] then  -- a header from before incarnations: its creation time and now
  local t = redis.call('TIME')
  fields[#fields + 1] = '_in'
  fields[#fields + 1] = ca .. '@' .. t[1] .. '.' .. t[2]
end
if created then
  fields[#fields + 1] = '_v'
  fields[#fields + 1] = '1'
  fields[#fields + 1] = '_ca'
  fields[#fields + 1] = ca
  if uid ~= '' then
    fields[#fields + 1] = '_uid'
    fields[#fields + 1] = uid
  end
end
if counted or tokens ~= 0 then
  fields[#fields + 1] = '_mc'
  fields[#fields + 1] = mc
  fields[#fields + 1] = '_tt'
  fields[#fields + 1] = tt
end
if lead and (lead ~= lead0 or created or replace_log == '1') then
  fields[#fields + 1] = '_lead'
  fields[#fields + 1] = lead
end
if hasx and not hadx then
  fields[#fields + 1] = '_x'
  fields[#fields + 1] = '1'
end
if hasv and not hadv then
  fields[#fields + 1] = '_vec'
  fields[#fields + 1] = '1'
end
if expires_at ~= '' then
  if created or expires_at ~= meta[2] then
    fields[#fields + 1] = '_ea'
    fields[#fields + 1] = expires_at
  end
elseif meta[2] then
  redis.call('HDEL', h, '_ea')
end
each('HSET', h, fields)

if created and not meta[1] then
"""
    + _HAS_CHILD
    + _LIVE
    + _REMOVE_TREE
    + _INDEX_ADD
    + _DROP_ORPHAN
    + r"""
  if child_name ~= '' then
    if redis.call('EXISTS', ph) == 1 then
      local ch = redis.call('HGET', ph, '_ch')
      if not ch then redis.call('HSET', ph, '_ch', child_name)
      elseif not has_child(ch, child_name) then
        redis.call('HSET', ph, '_ch', ch .. '/' .. child_name)
      end
    end
  elseif KEYS[6] and uid ~= '' and follow == '' then
    drop_orphan_user(user_prefix, uid, now)
    index_add(KEYS[6], sid, created_at)
  end
end

local ref = (created and uid ~= '' and uid) or meta[11]
if ref and child_name == '' and user_prefix ~= '' and string.sub(sid, 1, 3) ~= '~u:' then
"""
    + _TOUCH
    + r"""
  touch_user(user_prefix, ref, pexpire)
end
if follow == '1' then  -- a user's record without an expiry of its own: as long as its index
  local t = redis.call('PTTL', KEYS[6])
  if t > 0 then pexpire = tostring(t) elseif t == -1 then pexpire = '' end
end

local keys = {h}
if mc > 0 then keys[#keys + 1] = m end  -- no message was ever appended: no list
if hasv then keys[#keys + 1] = v end
if hasx then keys[#keys + 1] = x end
for _, key in ipairs(keys) do
  if pexpire ~= '' then redis.call('PEXPIRE', key, pexpire)
  else redis.call('PERSIST', key) end
end
redis.call('PUBLISH', channel, rev .. '\n' .. mc .. '\n' .. changed)
return {'OK', created and '1' or '0', rev, mc, tt, ca, lead or '', ref or ''}
"""
)

HEADER_FIELDS = ("_v", "_ca", "_ua", "_ea", "_rev", "_mc", "_tt", "_sum", "_uid", "_ch", "_lead")
"""A header's meta fields, in the order ops.build_header takes them."""

# KEYS: h. ARGV: the incarnation and revision of the state this process keeps for the session
# (statemw.backends.redis.kept). While the header is still at that version, only its meta
# fields come back ({1, [_in, _v, _ca, ...]}, HEADER_FIELDS after the incarnation); else the
# whole hash ({0, HGETALL}), so a large state crosses the network only when it changed.
HEADER_IF_CHANGED = (
    "local meta = redis.call('HMGET', KEYS[1], '_in', "
    + ", ".join(f"'{name}'" for name in HEADER_FIELDS)
    + f""")
if meta[1] == ARGV[1] and meta[{2 + HEADER_FIELDS.index("_rev")}] == ARGV[2] then
  return {{1, meta}}
end
return {{0, redis.call('HGETALL', KEYS[1])}}
"""
)

# KEYS: h, m, parents' h (nearest first). ARGV: now, window, user key base ('' in cluster mode)
# Headers go back as HGETALL's flat [field, value, ...] reply (ops.parse_header reads it): the
# client, not the one Redis thread, turns fields into a header; the script only looks at the
# meta fields ("_..."; state fields are "s:...") it needs to choose the window.
LOAD = r"""
local h, m = KEYS[1], KEYS[2]
local head = redis.call('HGETALL', h)
local meta = {}
for i = 1, #head, 2 do
  local f = head[i]
  if string.byte(f, 1) == 95 then meta[f] = head[i + 1] end
end
if (not meta['_v']) or (meta['_ea'] and tonumber(meta['_ea']) <= tonumber(ARGV[1])) then
  return false
end
local count = tonumber(meta['_mc'])
local start = math.max(count - tonumber(ARGV[2]), tonumber(meta['_sumupto'] or '0'), 0)
local window = {}
if count > start then window = redis.call('LRANGE', m, start, count - 1) end
local lead = {}
local nlead = math.min(tonumber(meta['_lead'] or '0'), start)
if nlead > 0 then lead = redis.call('LRANGE', m, 0, nlead - 1) end
local parents = {}
for k = 3, #KEYS do parents[#parents + 1] = redis.call('HGETALL', KEYS[k]) end
local user = false
if ARGV[3] ~= '' and meta['_uid'] then
  local uk = '~u:' .. meta['_uid']
  user = redis.call('HGETALL', ARGV[3] .. '{' .. uk .. '}:h:' .. uk)
end
return {head, start, window, parents, user, lead}
"""

# KEYS: h, parent h (or h again), [user index]. ARGV: sid, key base, child name ('' for a root)
DELETE = (
    _COMMON
    + r"""
local uid = redis.call('HGET', KEYS[1], '_uid')
if not remove_tree(ARGV[2], ARGV[1]) then return {0} end
redis.call('PUBLISH', ARGV[2] .. 'c:' .. ARGV[1], 'deleted')
if ARGV[3] ~= '' then unlink_child(KEYS[2], ARGV[3])
elseif KEYS[3] and uid then redis.call('ZREM', KEYS[3], ARGV[1]) end
return {1, uid or false}
"""
)

# Standalone only (keys of two tags). KEYS: old h, new h, [user index].
# ARGV: now, old sid, new sid, old key base, new key base
RENAME = (
    _COMMON
    + r"""
if not live(KEYS[1], tonumber(ARGV[1])) then return {'NOTFOUND'} end
local ob, nb = ARGV[4], ARGV[5]
local function move(old, new)
  local ch = redis.call('HGET', ob .. 'h:' .. old, '_ch')
  for _, kind in ipairs({'h:', 'm:', 'v:', 'x:'}) do
    if redis.call('EXISTS', ob .. kind .. old) == 1 then
      redis.call('RENAME', ob .. kind .. old, nb .. kind .. new)
    end
  end
  if ch then
    for name in string.gmatch(ch, '[^/]+') do move(old .. '/' .. name, new .. '/' .. name) end
  end
end
move(ARGV[2], ARGV[3])
local uid = redis.call('HGET', KEYS[2], '_uid')
if KEYS[3] and uid then
  local score = redis.call('ZSCORE', KEYS[3], ARGV[2])
  if score then
    redis.call('ZREM', KEYS[3], ARGV[2])
    redis.call('ZADD', KEYS[3], score, ARGV[3])
  end
end
return {'OK', uid or false}
"""
)

# KEYS: h, [user index]. ARGV: now, sid, key base, '1' when a dead record may be removed
PURGE = (
    _COMMON
    + r"""
local h, now = KEYS[1], tonumber(ARGV[1])
if redis.call('EXISTS', h) == 0 then return {0} end
if ARGV[4] == '1' and not live(h, now) then
  local uid = redis.call('HGET', h, '_uid')
  remove_tree(ARGV[3], ARGV[2])
  if KEYS[2] and uid then redis.call('ZREM', KEYS[2], ARGV[2]) end
  return {1, uid or false}
end
local x = ARGV[3] .. 'x:' .. ARGV[2]
local dead = redis.call('ZRANGEBYSCORE', x, '-inf', ARGV[1])
for _, key in ipairs(dead) do redis.call('HDEL', h, 's:' .. key) end
if #dead > 0 then redis.call('ZREMRANGEBYSCORE', x, '-inf', ARGV[1]) end
return {0}
"""
)

# KEYS: user index, user record h, its x. ARGV: sid, score, the session's pexpire ('' for none).
# Cluster mode's step before a commit that creates a session: the index entry, and the TTL of
# the user's keys (as the commit script does in standalone mode).
INDEX_ADD = (
    _COMMON
    + r"""
index_add(KEYS[1], ARGV[1], ARGV[2])
touch_keys(KEYS[1], KEYS[2], KEYS[3], ARGV[3])
return 1
"""
)

# KEYS: user index, user record h. ARGV: now, the record's key base, ref, then index entries found
# dead. Drops those entries, and once no session is left, the index and (unless it has an expiry
# of its own that is still ahead) the user's record. Returns 1 when the record went.
PURGE_USER = (
    _COMMON
    + r"""
local idx, uh, now = KEYS[1], KEYS[2], tonumber(ARGV[1])
for i = 4, #ARGV do redis.call('ZREM', idx, ARGV[i]) end
if redis.call('ZCARD', idx) > 0 then return 0 end
redis.call('DEL', idx)
if redis.call('EXISTS', uh) == 0 then return 0 end
local ea = redis.call('HGET', uh, '_ea')
if ea and tonumber(ea) > now then return 0 end
remove_tree(ARGV[2], '~u:' .. ARGV[3])
return 1
"""
)

# Cluster mode's follow-up to each commit of a user's session (the user's keys are in another
# slot). KEYS: user index, user record h, its x. ARGV: pexpire ('' for none).
TOUCH_USER = (
    _COMMON
    + r"""
touch_keys(KEYS[1], KEYS[2], KEYS[3], ARGV[1])
return 1
"""
)

FORGET_SKEW_SECONDS = 60
"""How far an app server's clock (a session's created_at) may run ahead of Redis's (the forget
marker) and a forget still reach a session its index missed: a session created up to this long
after the marker and missing from the index counts as forgotten too."""

# Cluster only. KEYS: user header, user index, forgotten marker. ARGV: n, then n pairs of a
# top-level session id of this user and its created_at. Reads the user's header (for a load) and
# repairs the index: a pair missing from it is added back, unless the user was forgotten after
# the session was created (forget_user missed it), in which case its id is returned for deletion.
USER_CHECK = (
    f"local SKEW = {FORGET_SKEW_SECONDS}\n"
    + r"""
local forgotten = {}
local gone = false
local a = 2
for _ = 1, tonumber(ARGV[1]) do
  local sid, created_at = ARGV[a], ARGV[a + 1]
  a = a + 2
  if not redis.call('ZSCORE', KEYS[2], sid) then
    if gone == false then gone = redis.call('GET', KEYS[3]) or '' end
    if gone ~= '' and tonumber(gone) + SKEW >= tonumber(created_at) then
      forgotten[#forgotten + 1] = sid
    else
      redis.call('ZADD', KEYS[2], created_at, sid)
    end
  end
end
return {redis.call('HGETALL', KEYS[1]), forgotten}
"""
)

# Cluster only. KEYS: the user's forgotten marker. Set to the server's time, as "<s>.<us>".
FORGET_MARK = r"""
local t = redis.call('TIME')
redis.call('SET', KEYS[1], t[1] .. '.' .. string.format('%06d', tonumber(t[2])))
return 1
"""

SCRIPTS = {
    "commit": COMMIT,
    "load": LOAD,
    "header_if_changed": HEADER_IF_CHANGED,
    "delete": DELETE,
    "rename": RENAME,
    "purge": PURGE,
    "index_add": INDEX_ADD,
    "purge_user": PURGE_USER,
    "touch_user": TOUCH_USER,
    "user_check": USER_CHECK,
    "forget_mark": FORGET_MARK,
}


def sharded(source: str) -> str:
    """A script for Redis Cluster: changes go out with SPUBLISH (Redis 7 sharded pub/sub), which
    stays inside the shard of the session's slot, instead of PUBLISH, which the cluster bus
    copies to every node. The channel carries the session's hash tag, so it is in that slot."""
    return source.replace("redis.call('PUBLISH',", "redis.call('SPUBLISH',")


CLUSTER_SCRIPTS = {name: sharded(source) for name, source in SCRIPTS.items()}
