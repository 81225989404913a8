-- Dedup + push in one step (contract.rs INBOUND_SCRIPT). Also run by the
-- official-SDK bridge that `make bench` compares the gateway with.
local list = KEYS[#KEYS]
local out = {}
for i = 1, #KEYS - 1 do
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', ARGV[1]) then
    redis.call('LPUSH', list, ARGV[i + 1])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
