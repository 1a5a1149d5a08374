--[[
  Overwrite Redis with PostgreSQL's truth for one item and one user, after a
  constraint violation showed the two disagree.

  KEYS[1] sold  KEYS[2] users (see checkout-5+2n.lua)
  ARGV[1] item index  ARGV[2] "code|slot|purchased_at_ms" of its purchase, or "" if unsold
  ARGV[3] user  ARGV[4] user limit  ARGV[5..] the user's purchases as slot, item index pairs

  Returns the number of items the user holds.
]]
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
local user = ARGV[3]
for slot = 1, tonumber(ARGV[4]) do redis.call('HDEL', KEYS[2], user .. '|' .. slot) end
local held = 0
for i = 5, #ARGV, 2 do
  redis.call('HSET', KEYS[2], user .. '|' .. ARGV[i], ARGV[i + 1])
  held = held + 1
end
if held == 0 then redis.call('HDEL', KEYS[2], user) else redis.call('HSET', KEYS[2], user, held) end
return held
