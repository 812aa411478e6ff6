"""
The Lua scripts a node runs on Redis (each one round trip, atomic).

Keys (one Redis, not Redis Cluster: the scripts touch several keys):
 - C{p2p:peer:<peer id>}: hash C{n} (node id), C{d} (peer record); TTL
   the registration lifetime.
 - C{p2p:session:<session id hex>}: hash C{n}, C{d} (session record),
   C{s} (lobby key); TTL the registration lifetime.
 - C{p2p:lobby:all}, C{p2p:lobby:g:<game id>}: sorted sets of session ids
   scored by lobby key; C{p2p:lobby:seq}: the lobby key counter.
 - C{p2p:hosted:<peer id>}: set of the session ids a peer hosts.
 - C{p2p:alloc:<intro id hex>}: a relay offer shared by both nodes of
   an introduction.
 - channel C{p2p:node:<node id>}: messages forwarded to a node.
"""

PEER = "p2p:peer:"
SESSION = "p2p:session:"
LOBBY_ALL = "p2p:lobby:all"
LOBBY_GAME = "p2p:lobby:g:"
LOBBY_SEQ = "p2p:lobby:seq"
HOSTED = "p2p:hosted:"
ALLOC = "p2p:alloc:"
CHANNEL = "p2p:node:"

#: KEYS: peer keys; ARGV: node, ttl ms, one record per key.
PUT_PEERS = """
for i, k in ipairs(KEYS) do
  redis.call('HSET', k, 'n', ARGV[1], 'd', ARGV[i + 2])
  redis.call('PEXPIRE', k, ARGV[2])
end
return #KEYS
"""

#: KEYS: peer keys; ARGV: node, ttl ms.  Only the node holding a peer
#: extends it.
REFRESH_PEERS = """
local n = 0
for _, k in ipairs(KEYS) do
  if redis.call('HGET', k, 'n') == ARGV[1] then
    redis.call('PEXPIRE', k, ARGV[2])
    n = n + 1
  end
end
return n
"""

#: KEYS: peer keys; ARGV: node.  Only the node holding a peer removes it
#: (another may hold it now).
DROP_PEERS = """
local n = 0
for _, k in ipairs(KEYS) do
  if redis.call('HGET', k, 'n') == ARGV[1] then
    redis.call('DEL', k)
    n = n + 1
  end
end
return n
"""

#: KEYS: session, lobby all, lobby game, lobby seq, hosted-by; ARGV: node,
#: ttl ms, record, session id hex, lobby key or ''.  Returns the lobby key.
PUT_SESSION = """
local s = redis.call('HGET', KEYS[1], 's')
if not s then
  if ARGV[5] ~= '' then s = ARGV[5] else s = redis.call('INCR', KEYS[4]) end
end
redis.call('HSET', KEYS[1], 'n', ARGV[1], 'd', ARGV[3], 's', s)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], s, ARGV[4])
redis.call('ZADD', KEYS[3], s, ARGV[4])
redis.call('SADD', KEYS[5], ARGV[4])
redis.call('PEXPIRE', KEYS[5], ARGV[2])
return s
"""

#: KEYS: session, lobby all, lobby game, hosted-by; ARGV: node, session
#: id hex.
DROP_SESSION = """
if redis.call('HGET', KEYS[1], 'n') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('SREM', KEYS[4], ARGV[2])
return 1
"""

#: KEYS: session keys; ARGV: node, ttl ms.  Extends the sessions this
#: node holds.
REFRESH_SESSIONS = REFRESH_PEERS

#: KEYS: session keys.  Returns, per key, {node, record} or false.
READ_SESSIONS = """
local out = {}
for i, k in ipairs(KEYS) do
  local v = redis.call('HMGET', k, 'n', 'd')
  if v[1] then out[i] = v else out[i] = false end
end
return out
"""

#: KEYS: hosted-by set.  Returns {session id hex, lobby key, record}* of
#: the sessions that still exist.
READ_HOSTED = """
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local v = redis.call('HMGET', ARGV[1] .. id, 's', 'd')
  if v[1] then
    table.insert(out, id); table.insert(out, v[1]); table.insert(out, v[2])
  end
end
return out
"""

#: KEYS: a lobby index; ARGV: start score ("-inf" or "(<key>"), count,
#: the session key prefix.  Returns, JSON-encoded in one string,
#: [total, id, lobby key, record or false, ...] for the next C{count}
#: sessions: one round trip per chunk, and one reply to parse (the
#: client reads each element of an array reply in a reactor turn of its
#: own).
PAGE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf', 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
local out = {redis.call('ZCARD', KEYS[1])}
for i = 1, #ids, 2 do
  table.insert(out, ids[i])
  table.insert(out, ids[i + 1])
  local d = redis.call('HGET', ARGV[3] .. ids[i], 'd')
  if d then table.insert(out, d) else table.insert(out, false) end
end
return cjson.encode(out)
"""
