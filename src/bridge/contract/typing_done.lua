-- Marks a question answered. KEYS: typing key. ARGV: TTL, [`TYPING_DONE`].
-- Returns the reaction id stored there before (to delete it), if any.
local old = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[1])
return old
