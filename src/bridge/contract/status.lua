-- "Connected wins" status write. KEYS: status key. ARGV: json, TTL,
-- '1' when this instance is connected, instance id. Returns 1 when written.
local write = ARGV[3] == '1'
if not write then
  local cur = redis.call('GET', KEYS[1])
  if not cur then
    write = true
  else
    local ok, obj = pcall(cjson.decode, cur)
    write = (not ok) or type(obj) ~= 'table' or obj.instance_id == ARGV[4] or obj.state ~= 'connected'
  end
end
if write then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return 1
end
return 0
