--[[
  Checkout: is the item sold? is the user full? else get or create the user's
  code for this item. Checkout reserves nothing: the first purchase wins.

  KEYS[1] ready    sale state is loaded from PostgreSQL (string)
  KEYS[2] sold     hash item index -> "code|slot|purchased_at_ms"
  KEYS[3] users    hash user -> items held; "user|slot" -> item index
  KEYS[4] codes    hash "user|index" -> code
  KEYS[5] owners   hash code -> "user|index"
  KEYS[6] user bucket, KEYS[7] ip bucket (token buckets)
  ARGV[1] user  ARGV[2] item index  ARGV[3] new code (used if none yet)
  ARGV[4] user limit  ARGV[5] now (ms)
  ARGV[6] user rate/s  ARGV[7] user burst  ARGV[8] ip rate/s  ARGV[9] ip burst

  Returns {0, code} ok (the same code on every checkout of this user and item,
  also after they bought it) | {-1} not ready | {1} ITEM_SOLD
  | {2} USER_LIMIT_REACHED | {3, retry_ms} RATE_LIMITED
]]
--@include bucket.lua

if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local now = tonumber(ARGV[5])
local wait = take(KEYS[7], tonumber(ARGV[8]), tonumber(ARGV[9]), now)
if wait == 0 then wait = take(KEYS[6], tonumber(ARGV[6]), tonumber(ARGV[7]), now) end
if wait > 0 then return {3, wait} end

local user, index = ARGV[1], ARGV[2]
local field = user .. '|' .. index
local code = redis.call('HGET', KEYS[4], field)
local sold = redis.call('HGET', KEYS[2], index)
if sold then
  if code and string.sub(sold, 1, #code + 1) == code .. '|' then return {0, code} end
  return {1}
end
if (tonumber(redis.call('HGET', KEYS[3], user)) or 0) >= tonumber(ARGV[4]) then return {2} end
if code then return {0, code} end
redis.call('HSET', KEYS[4], field, ARGV[3])
redis.call('HSET', KEYS[5], ARGV[3], field)
return {0, ARGV[3]}
