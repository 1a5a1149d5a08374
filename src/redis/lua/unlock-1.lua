--[[
  Release a lock, only by its owner; with a message, also publish it on a
  channel in the same round trip (a purchase's lock: the purchase PostgreSQL
  has just committed, told to every instance, src/sale/sold-cache.ts). The
  message goes out whoever holds the lock: what it announces is committed
  either way.
  KEYS[1] lock  ARGV[1] owner token  ARGV[2] channel, ARGV[3] message (optional)
  Returns 1 if released, 0 if the lock had expired or belongs to someone else.
]]
if ARGV[2] then
  redis.call('PUBLISH', ARGV[2], ARGV[3])
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
