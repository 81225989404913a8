-- Dedup + push in one step (contract INBOUND_SCRIPT), for one or more
-- messages in order. KEYS: one dedup key per message, then the list.
-- ARGV: the dedup TTL, then one item per message. Returns per message 1
-- when pushed, 0 when it was seen before. Also run by the official-SDK
-- bridge that `make bench` compares the gateway with.
--
-- Redis does not roll a script back when a command fails half-way, so
-- every write is checked (the list's type, this user's permissions)
-- before the first one, and each item is pushed before its dedup marker
-- is set: a failure can then at worst store an item twice (the server
-- de-duplicates on `id`), never mark one stored that is not.
local list = KEYS[#KEYS]
local t = redis.call('TYPE', list)['ok']
if t ~= 'list' and t ~= 'none' then
  return redis.error_reply('WRONGTYPE ' .. list .. ' holds a ' .. t .. ', not a list')
end
for i = 1, #KEYS - 1 do
  if not redis.acl_check_cmd('LPUSH', list, ARGV[i + 1])
    or not redis.acl_check_cmd('SET', KEYS[i], '1', 'EX', ARGV[1]) then
    return redis.error_reply('NOPERM this Redis user may not LPUSH ' .. list .. ' and SET ' .. KEYS[i])
  end
end
local out = {}
for i = 1, #KEYS - 1 do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    out[i] = 0
  else
    redis.call('LPUSH', list, ARGV[i + 1])
    redis.call('SET', KEYS[i], '1', 'EX', ARGV[1])
    out[i] = 1
  end
end
return out
