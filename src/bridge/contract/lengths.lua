-- The lengths of several lists in one reply (contract LENGTHS_SCRIPT), for
-- the queue gauges. KEYS: the lists.
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('LLEN', key)
end
return out
