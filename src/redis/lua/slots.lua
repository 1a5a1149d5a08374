--[[
  Included by other scripts (--@include slots.lua), never run alone.
  free_slot(users, user, slot, index): gives back the user's slot if it still
  holds this item index, and lowers the user's count (dropping it at zero).
]]
local function free_slot(users, user, slot, index)
  local field = user .. '|' .. slot
  if redis.call('HGET', users, field) ~= index then return end
  redis.call('HDEL', users, field)
  if redis.call('HINCRBY', users, user, -1) <= 0 then redis.call('HDEL', users, user) end
end
