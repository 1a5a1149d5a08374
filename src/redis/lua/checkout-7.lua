--[[
  Checkout: is the item sold? is the user full? else get or create the user's
  code for this item. Checkout reserves nothing: the first purchase wins.

  Every script names a sale's keys in this order (those it uses):
  KEYS[1] ready    id of the Redis server the sale state was loaded into from
                   PostgreSQL (string); any other value means "not loaded here"
  KEYS[2] sold     hash item index -> "code|slot|purchased_at_ms"
  KEYS[3] users    hash user -> items held; "user|slot" -> item index
  KEYS[4] owners   hash code -> "user|index"
  KEYS[5] codes    hash "user|index" -> code
  KEYS[6] user bucket, KEYS[7] ip bucket (token buckets)
  ARGV[1] id of this Redis server, as the caller knows it (INFO server run_id)
  ARGV[2] user  ARGV[3] item index  ARGV[4] new code (used if none yet)
  ARGV[5] user limit  ARGV[6] now (ms)
  ARGV[7] user rate/s  ARGV[8] user burst  ARGV[9] ip rate/s  ARGV[10] ip burst

  Returns {0, code} ok (the same code on every checkout of this user and item,
  also after they bought it) | {-1} not ready | {1} ITEM_SOLD
  | {2} USER_LIMIT_REACHED | {3, retry_ms} RATE_LIMITED
]]
--@include bucket.lua

if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {-1} end
local wait = charge(KEYS[7], KEYS[6], tonumber(ARGV[6]), ARGV[7], ARGV[8], ARGV[9], ARGV[10])
if wait > 0 then return {3, wait} end

local user, index = ARGV[2], ARGV[3]
local field = user .. '|' .. index
local code = redis.call('HGET', KEYS[5], field)
local sold = redis.call('HGET', KEYS[2], index)
if sold then
  if code and string.sub(sold, 1, #code + 1) == code .. '|' then return {0, code} end
  return {1}
end
if (tonumber(redis.call('HGET', KEYS[3], user)) or 0) >= tonumber(ARGV[5]) then return {2} end
if code then return {0, code} end
redis.call('HSET', KEYS[5], field, ARGV[4])
redis.call('HSET', KEYS[4], ARGV[4], field)
return {0, ARGV[4]}
