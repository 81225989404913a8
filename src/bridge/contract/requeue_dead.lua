-- Puts a dead-lettered item back on the outbound list (contract
-- REQUEUE_DEAD_SCRIPT). KEYS: the dead-letter list, the outbound list.
-- ARGV: the dead letter exactly as listed, the item. Returns 1 when the
-- dead letter was there (and is now gone, its item queued), else 0.
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
  redis.call('LPUSH', KEYS[2], ARGV[2])
  return 1
end
return 0
