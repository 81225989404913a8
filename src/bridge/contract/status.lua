-- "Connected wins" status writes, for one or more channels. KEYS: status
-- keys. ARGV: TTL, instance id, then per key its json and '1' when this
-- instance is connected. Returns per key 1 when written, else 0.
local ttl, instance = ARGV[1], ARGV[2]
local out = {}
for i, key in ipairs(KEYS) do
  local json, connected = ARGV[2 * i + 1], ARGV[2 * i + 2]
  local write = connected == '1'
  if not write then
    local cur = redis.call('GET', key)
    if not cur then
      write = true
    else
      local ok, obj = pcall(cjson.decode, cur)
      write = (not ok) or type(obj) ~= 'table' or obj.instance_id == instance or obj.state ~= 'connected'
    end
  end
  if write then
    redis.call('SET', key, json, 'EX', ttl)
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
