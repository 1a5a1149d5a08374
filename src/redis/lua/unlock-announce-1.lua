--[[
  Release a purchase lock, only by its owner, and announce the purchase the
  lock guarded, which PostgreSQL has just committed, on the instances'
  pub/sub channel (src/sale/sold-cache.ts): the two in one round trip. The
  announcement goes out whoever holds the lock: the purchase is committed
  either way.
  KEYS[1] lock  ARGV[1] owner token  ARGV[2] channel  ARGV[3] message
  Returns 1 if released, 0 if the lock had expired or belongs to someone else.
]]
redis.call('PUBLISH', ARGV[2], ARGV[3])
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
