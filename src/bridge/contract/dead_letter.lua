-- Dead-letters an outbound item in one step (contract DEAD_LETTER_SCRIPT):
-- pushes the dead letter, trims the list to the newest entries and removes
-- the item from its processing list, so an item is never both dead-lettered
-- and still pending. One script (not a MULTI pipeline) so that a Redis that
-- stops answering costs one read timeout, not one per command.
-- KEYS: the dead-letter list, the processing list, optionally the item's
-- receipt key. ARGV: the dead letter, the list's maximum length, the raw
-- item, and with a receipt key the receipt and its TTL.
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
redis.call('LREM', KEYS[2], 1, ARGV[3])
if KEYS[3] then
  redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[5])
end
return 1
