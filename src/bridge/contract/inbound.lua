-- Dedup + push in one step (contract INBOUND_SCRIPT), for one or more
-- messages in order. KEYS: the same number of dedup keys per message (its
-- message id key, and for text its fingerprint key), then the list. ARGV:
-- the dedup TTL, then one item per message. Returns per message 1 when
-- pushed, 0 when any of its keys says it was seen before (its other keys
-- are then set too). Also run by the official-SDK bridge that `make bench`
-- compares the gateway with (one key per message).
--
-- Redis does not roll a script back when a command fails half-way, so
-- every write is checked (the list's type, this user's permissions)
-- before the first one, and each item is pushed before its dedup markers
-- are set: a failure can then at worst store an item twice (the server
-- de-duplicates on `id`), never mark one stored that is not.
local list = KEYS[#KEYS]
local items = #ARGV - 1
local per = (#KEYS - 1) / items
if per < 1 or per ~= math.floor(per) then
  return redis.error_reply('ERR inbound script: ' .. (#KEYS - 1) .. ' keys for ' .. items .. ' items')
end
local t = redis.call('TYPE', list)['ok']
if t ~= 'list' and t ~= 'none' then
  return redis.error_reply('WRONGTYPE ' .. list .. ' holds a ' .. t .. ', not a list')
end
for i = 1, #KEYS - 1 do
  local item = math.floor((i - 1) / per) + 2
  if not redis.acl_check_cmd('LPUSH', list, ARGV[item])
    or not redis.acl_check_cmd('SET', KEYS[i], '1', 'EX', ARGV[1]) then
    return redis.error_reply('NOPERM this Redis user may not LPUSH ' .. list .. ' and SET ' .. KEYS[i])
  end
end
local out = {}
for n = 1, items do
  local seen = false
  for k = 1, per do
    if redis.call('EXISTS', KEYS[(n - 1) * per + k]) == 1 then
      seen = true
    end
  end
  if seen then
    out[n] = 0
  else
    redis.call('LPUSH', list, ARGV[n + 1])
    out[n] = 1
  end
  for k = 1, per do
    redis.call('SET', KEYS[(n - 1) * per + k], '1', 'EX', ARGV[1])
  end
end
return out
