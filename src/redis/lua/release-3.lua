--[[
  Undo a reservation whose PostgreSQL write did not happen, and drop the lock.
  Only this code's own reservation is removed, and only the lock's owner
  releases the lock, so a late call can never undo someone else's work.

  KEYS[1] sold  KEYS[2] users  KEYS[3] lock (see purchase-7.lua)
  ARGV[1] code  ARGV[2] user  ARGV[3] item index  ARGV[4] slot  ARGV[5] lock token

  Returns 1 if the reservation was removed, else 0.
]]
--@include slots.lua

local removed = 0
local sold = redis.call('HGET', KEYS[1], ARGV[3])
if sold and string.sub(sold, 1, #ARGV[1] + 1) == ARGV[1] .. '|' then
  redis.call('HDEL', KEYS[1], ARGV[3])
  free_slot(KEYS[2], ARGV[2], ARGV[4], ARGV[3])
  removed = 1
end
if redis.call('GET', KEYS[3]) == ARGV[5] then redis.call('DEL', KEYS[3]) end
return removed
