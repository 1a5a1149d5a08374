--[[
  Release a lock, only by its owner.
  KEYS[1] lock  ARGV[1] owner token
  Returns 1 if released, 0 if the lock had expired or belongs to someone else.
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
