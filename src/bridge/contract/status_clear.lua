-- Deletes a status key only if this instance wrote it. KEYS: status key. ARGV: instance id.
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, obj = pcall(cjson.decode, cur)
  if (not ok) or type(obj) ~= 'table' or obj.instance_id == ARGV[1] then
    redis.call('DEL', KEYS[1])
    return 1
  end
end
return 0
