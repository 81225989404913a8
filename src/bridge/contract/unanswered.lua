-- Claims questions that got no answer in time (contract UNANSWERED_SCRIPT).
-- KEYS: the pending set. ARGV: stored before (ms), at most how many.
-- Removes and returns them: only the replica that removed one acts on it.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, ARGV[2])
if #due > 0 then
  redis.call('ZREM', KEYS[1], unpack(due))
end
return due
