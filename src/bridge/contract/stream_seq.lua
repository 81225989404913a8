-- The next sequence of a CardKit stream (strictly increasing across every
-- operation on its cards and every replica). KEYS: the stream hash.
-- ARGV: 'progress' or 'final', TTL, step (1; more to get past a sequence
-- Feishu already has). A progress update gets -1 once a final
-- answer has started completing the stream ('closing'); a final answer
-- sets 'closing' first, so every later progress sequence is refused and
-- every earlier one is below the final's (Feishu refuses it, 300317).
if ARGV[1] == 'progress' and redis.call('HEXISTS', KEYS[1], 'closing') == 1 then
  return -1
end
if ARGV[1] == 'final' then
  redis.call('HSET', KEYS[1], 'closing', '1')
end
local n = redis.call('HINCRBY', KEYS[1], 'seq', tonumber(ARGV[3]) or 1)
redis.call('EXPIRE', KEYS[1], ARGV[2])
return n
