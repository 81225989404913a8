-- HSET of field/value pairs and EXPIRE (contract TRACE_NOTE_SCRIPT).
-- KEYS: the hash. ARGV: TTL, then field, value, field, value, …
-- A field named "+<name>" is incremented by its value instead.
for i = 2, #ARGV - 1, 2 do
  local field = ARGV[i]
  if string.sub(field, 1, 1) == '+' then
    redis.call('HINCRBY', KEYS[1], string.sub(field, 2), ARGV[i + 1])
  else
    redis.call('HSET', KEYS[1], field, ARGV[i + 1])
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
