--[[
  Give back a reservation that PostgreSQL never confirmed (its request died
  between Redis and PostgreSQL), found by the reconciler. It is removed only
  if it is unchanged and no request holds its code's purchase lock, so a
  purchase still in flight is never undone.

  KEYS[1] sold  KEYS[2] users  KEYS[3] owners  KEYS[4] lock (see purchase-7.lua)
  ARGV[1] item index  ARGV[2] the "code|slot|purchased_at_ms" value the reconciler saw

  Returns 1 if the reservation was removed, else 0.
]]
--@include slots.lua

if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] or redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
local code, slot = string.match(ARGV[2], '^([^|]+)|([^|]+)|')
redis.call('HDEL', KEYS[1], ARGV[1])
local owner = redis.call('HGET', KEYS[3], code)
if owner then free_slot(KEYS[2], string.sub(owner, 1, string.find(owner, '|', 1, true) - 1), slot, ARGV[1]) end
return 1
