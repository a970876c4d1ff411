"""The Lua scripts the Redis backend runs: each one is a whole operation, atomic on the server.

Key layout (see docs/redis.md); every key of a session tree carries the root's hash tag:
    <P>{<root>}:h:<sid>   hash: meta fields "_..." + one field "s:<key>" per state key
    <P>{<root>}:m:<sid>   list of encoded messages (RPUSH appends, LRANGE reads a window)
    <P>{<root>}:v:<sid>   hash: message position -> cached vector
    <P>{<root>}:x:<sid>   sorted set: state key -> its expires_at (only keys with a TTL)
    <P>{~u:<uid>}:i       sorted set: the user's top-level session ids by creation time
Timestamps travel as the strings Python wrote (repr of a float) and are stored unchanged, so no
precision is lost in Lua; Lua only compares them with tonumber().
"""

from __future__ import annotations

# Shared helpers, prepended to the scripts that need them.
_COMMON = r"""
local function live(h, now)
  local meta = redis.call('HMGET', h, '_v', '_ea')
  if not meta[1] then return false end
  return (not meta[2]) or tonumber(meta[2]) > now
end

local function has_child(list, name)
  return string.find('/' .. list .. '/', '/' .. name .. '/', 1, true) ~= nil
end

local function index_add(idx, sid, score)
  if redis.call('ZSCORE', idx, sid) then return end
  local last = redis.call('ZREVRANGE', idx, 0, 0, 'WITHSCORES')
  if last[2] and tonumber(last[2]) >= tonumber(score) then
    score = string.format('%.17g', tonumber(last[2]) + 0.001)
  end
  redis.call('ZADD', idx, score, sid)
end

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

# KEYS: h, m, v, x, parent h (or h again), [user index (standalone only)]
# ARGV: see ops.commit_op for the order.
COMMIT = (
    _COMMON
    + r"""
local h, m, v, x, ph = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now = tonumber(ARGV[1])
local created_at, uid, expected, expires_at = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local replace_log, tokens, summary, summary_upto = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local child_name, channel, pexpire, changed = ARGV[10], ARGV[11], ARGV[12], ARGV[13]
local nset, ndel, napp, nvec = tonumber(ARGV[14]), tonumber(ARGV[15]), tonumber(ARGV[16]),
  tonumber(ARGV[17])
local sid = ARGV[18]

local exists = redis.call('EXISTS', h) == 1
local created = false
if not live(h, now) then
  if created_at == '' then return {'NOTFOUND'} end
  if expected ~= '' and tonumber(expected) ~= 0 then return {'CONFLICT', '0'} end
  if exists then redis.call('DEL', h, m, v, x) end
  redis.call('HSET', h, '_v', '1', '_ca', created_at, '_rev', '0', '_mc', '0', '_tt', '0')
  if uid ~= '' then redis.call('HSET', h, '_uid', uid) end
  created = true
elseif expected ~= '' then
  local rev = redis.call('HGET', h, '_rev')
  if tonumber(rev) ~= tonumber(expected) then return {'CONFLICT', rev} end
end

-- state: drop expired keys, then deletes, then sets (last write wins per key)
local dead = redis.call('ZRANGEBYSCORE', x, '-inf', ARGV[1])
for _, key in ipairs(dead) do redis.call('HDEL', h, 's:' .. key) end
if #dead > 0 then redis.call('ZREMRANGEBYSCORE', x, '-inf', ARGV[1]) end
local d = 19 + 3 * nset
for _ = 1, ndel do
  redis.call('HDEL', h, 's:' .. ARGV[d])
  redis.call('ZREM', x, ARGV[d])
  d = d + 1
end
local s = 19
for _ = 1, nset do
  redis.call('HSET', h, 's:' .. ARGV[s], ARGV[s + 1])
  if ARGV[s + 2] ~= '' then redis.call('ZADD', x, ARGV[s + 2], ARGV[s])
  else redis.call('ZREM', x, ARGV[s]) end
  s = s + 3
end

-- messages
if replace_log == '1' then
  redis.call('DEL', m, v)
  redis.call('HSET', h, '_mc', '0', '_tt', '0')
  redis.call('HDEL', h, '_sum', '_sumupto')
end
local a = d
local left = napp
while left > 0 do
  local take = math.min(left, 1000)
  redis.call('RPUSH', m, unpack(ARGV, a, a + take - 1))
  a = a + take
  left = left - take
end
if napp > 0 then redis.call('HINCRBY', h, '_mc', napp) end
if tonumber(tokens) ~= 0 then redis.call('HINCRBY', h, '_tt', tokens) end
if summary ~= '' then
  local cur = redis.call('HGET', h, '_sumupto')
  if (not cur) or tonumber(summary_upto) >= tonumber(cur) then
    redis.call('HSET', h, '_sum', summary, '_sumupto', summary_upto)
  end
end
for _ = 1, nvec do
  redis.call('HSET', v, ARGV[a], ARGV[a + 1])
  a = a + 2
end

redis.call('HSET', h, '_ua', ARGV[1])
if expires_at ~= '' then redis.call('HSET', h, '_ea', expires_at)
else redis.call('HDEL', h, '_ea') end
local rev = redis.call('HINCRBY', h, '_rev', 1)

if created and not exists then
  if child_name ~= '' then
    if redis.call('EXISTS', ph) == 1 then
      local ch = redis.call('HGET', ph, '_ch')
      if not ch then redis.call('HSET', ph, '_ch', child_name)
      elseif not has_child(ch, child_name) then
        redis.call('HSET', ph, '_ch', ch .. '/' .. child_name)
      end
    end
  elseif KEYS[6] and uid ~= '' then
    index_add(KEYS[6], sid, created_at)
  end
end

for _, key in ipairs({h, m, v, x}) do
  if pexpire ~= '' then redis.call('PEXPIRE', key, pexpire)
  else redis.call('PERSIST', key) end
end
local mc = redis.call('HGET', h, '_mc')
redis.call('PUBLISH', channel, rev .. '\n' .. mc .. '\n' .. changed)
return {'OK', created and '1' or '0', redis.call('HGETALL', h)}
"""
)

# KEYS: h, m, parents' h (nearest first). ARGV: now, window, user key base ('' in cluster mode)
LOAD = (
    _COMMON
    + r"""
local h, m = KEYS[1], KEYS[2]
if not live(h, tonumber(ARGV[1])) then return false end
local header = redis.call('HGETALL', h)
local meta = redis.call('HMGET', h, '_mc', '_sumupto', '_uid')
local count = tonumber(meta[1])
local start = math.max(count - tonumber(ARGV[2]), tonumber(meta[2] or '0'), 0)
local window = {}
if count > start then window = redis.call('LRANGE', m, start, count - 1) end
local parents = {}
for k = 3, #KEYS do parents[#parents + 1] = redis.call('HGETALL', KEYS[k]) end
local user = false
if ARGV[3] ~= '' and meta[3] then
  local uk = '~u:' .. meta[3]
  user = redis.call('HGETALL', ARGV[3] .. '{' .. uk .. '}:h:' .. uk)
end
return {header, start, window, parents, user}
"""
)

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

# KEYS: user index. ARGV: sid, score. Cluster mode's follow-up to a commit that created a session.
INDEX_ADD = (
    _COMMON
    + r"""
index_add(KEYS[1], ARGV[1], ARGV[2])
return 1
"""
)

SCRIPTS = {
    "commit": COMMIT,
    "load": LOAD,
    "delete": DELETE,
    "rename": RENAME,
    "purge": PURGE,
    "index_add": INDEX_ADD,
}
