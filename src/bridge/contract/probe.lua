-- What the gateway needs of Redis, checked as its own user (contract
-- PROBE_SCRIPT, run by `check`, `status` and the health check). KEYS: the
-- inbound list, the outbound list, a probe key of this instance. Returns 1,
-- or the error that names the trouble (WRONGTYPE, NOPERM, OOM, READONLY).
for i = 1, 2 do
  local t = redis.call('TYPE', KEYS[i])['ok']
  if t ~= 'list' and t ~= 'none' then
    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' holds a ' .. t .. ', not a list')
  end
end
if not redis.acl_check_cmd('LPUSH', KEYS[1], 'x') then
  return redis.error_reply('NOPERM this Redis user may not LPUSH ' .. KEYS[1])
end
if not redis.acl_check_cmd('BLMOVE', KEYS[2], KEYS[2], 'RIGHT', 'LEFT', '1') then
  return redis.error_reply('NOPERM this Redis user may not BLMOVE from ' .. KEYS[2])
end
-- A real write: refused with OOM or READONLY when Redis cannot take one.
redis.call('SET', KEYS[3], '1', 'EX', 10)
return 1
