-- Dedup + push in one step (contract INBOUND_SCRIPT), for one or more
-- messages in order. KEYS: the same number of dedup keys per message (its
-- message id key, and for text its fingerprint key), then the list. ARGV:
-- the dedup TTL, then one item per message. Returns per message 1 when
-- pushed, 0 when any of its keys says it was seen before (its other keys
-- are then set too). Also run by the official-SDK bridge that `make bench`
-- compares the gateway with (one key per message).
--
-- The gateway also records each message for `trace` and ANSWER_TIMEOUT:
-- then ARGV[1] is "<dedup ttl> <trace ttl> <now ms> <instance>", KEYS go
-- on after the list with the pending set and one trace key per message, and
-- ARGV goes on after the items with one trace record per message:
-- "<inbound id>\t<channel>\t<chat>\t<chat type>\t<thread 1 or empty>\t<message id>"
-- (given, not decoded from the item: a JSON decode per message was a large
-- share of the script's time).
--
-- Redis does not roll a script back when a command fails half-way, so
-- every write is checked (the list's type, this user's permissions)
-- before the first one, and each item is pushed before its dedup markers
-- are set: a failure can then at worst store an item twice (the server
-- de-duplicates on `id`), never mark one stored that is not.
local ttl, trace_ttl, now, instance = string.match(ARGV[1], '^(%d+) (%d+) (%d+) (.+)$')
if not ttl then
  ttl = ARGV[1]
end
local items = #ARGV - 1
local extra = 0
if trace_ttl then
  items = (#ARGV - 1) / 2
  extra = items + 1
end
local per = (#KEYS - 1 - extra) / items
if items < 1 or items ~= math.floor(items) or per < 1 or per ~= math.floor(per) then
  return redis.error_reply('ERR inbound script: ' .. #KEYS .. ' keys for ' .. items .. ' items')
end
local list = KEYS[items * per + 1]
local pending = KEYS[items * per + 2]
local t = redis.call('TYPE', list)['ok']
if t ~= 'list' and t ~= 'none' then
  return redis.error_reply('WRONGTYPE ' .. list .. ' holds a ' .. t .. ', not a list')
end
-- Permissions depend on the command and its keys, not on the values: the
-- push is checked once, each dedup key once.
if not redis.acl_check_cmd('LPUSH', list, 'x') then
  return redis.error_reply('NOPERM this Redis user may not LPUSH ' .. list .. ' and SET ' .. KEYS[1])
end
for i = 1, items * per do
  if not redis.acl_check_cmd('SET', KEYS[i], '1', 'EX', ttl) then
    return redis.error_reply('NOPERM this Redis user may not LPUSH ' .. list .. ' and SET ' .. KEYS[i])
  end
end
if trace_ttl then
  for n = 1, items do
    local trace = KEYS[items * per + 2 + n]
    if not redis.acl_check_cmd('ZADD', pending, 'NX', now, 'm')
      or not redis.acl_check_cmd('HSET', trace, 'f', 'v')
      or not redis.acl_check_cmd('EXPIRE', trace, trace_ttl) then
      return redis.error_reply('NOPERM this Redis user may not ZADD ' .. pending .. ' and HSET ' .. trace)
    end
  end
end
local out = {}
for n = 1, items do
  local mine = {}
  for k = 1, per do
    mine[k] = KEYS[(n - 1) * per + k]
  end
  local seen = redis.call('EXISTS', unpack(mine)) > 0
  if seen then
    out[n] = 0
  else
    redis.call('LPUSH', list, ARGV[n + 1])
    out[n] = 1
  end
  for k = 1, per do
    redis.call('SET', KEYS[(n - 1) * per + k], '1', 'EX', ttl)
  end
  if trace_ttl then
    local trace = KEYS[items * per + 2 + n]
    if seen then
      redis.call('HINCRBY', trace, 'copies', 1)
      redis.call('HSETNX', trace, 'outcome', 'duplicate')
    else
      local id, channel, chat, chat_type, thread, message_id =
        string.match(ARGV[items + 1 + n], '^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)$')
      if id then
        redis.call('HSET', trace, 'outcome', 'stored', 'received_at', now, 'instance', instance,
          'inbound_id', id, 'channel', channel, 'chat', chat, 'chat_type', chat_type, 'thread', thread)
        redis.call('ZADD', pending, 'NX', now, message_id)
      end
    end
    redis.call('EXPIRE', trace, trace_ttl)
  end
end
return out
