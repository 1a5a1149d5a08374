--[[
  Checkout of n requests for one sale, in the order given: for each, is it
  rate limited? is the item sold? is the user full? else get or create the
  user's code for this item. Checkout reserves nothing: the first purchase
  wins. The caller sends the checkouts of one turn of its event loop together
  (src/redis/redis.ts); each is decided exactly as if sent alone, one after
  the other.

  Every script names a sale's keys in this order (those it uses):
  KEYS[1] ready    id of the Redis server the sale state was loaded into from
                   PostgreSQL (string); any other value means "not loaded here"
  KEYS[2] sold     hash item index -> "code|slot|purchased_at_ms"
  KEYS[3] users    hash user -> items held; "user|slot" -> item index
  KEYS[4] owners   hash code -> "user|index"
  KEYS[5] codes    hash "user|index" -> code
  KEYS[4+2i], KEYS[5+2i]  request i's user bucket and ip bucket (token buckets)
  ARGV[1] id of this Redis server, as the caller knows it (INFO server run_id)
  ARGV[2] user limit  ARGV[3] now (ms)
  ARGV[4] user rate/s  ARGV[5] user burst  ARGV[6] ip rate/s  ARGV[7] ip burst
  ARGV[5+3i], ARGV[6+3i], ARGV[7+3i]  request i's user, item index and new
                   code (used if the user has none for the item yet)

  Returns two values per request, in order: 0, code ok (the same code on every
  checkout of this user and item, also after they bought it) | -1, 0 not ready
  | 1, 0 ITEM_SOLD | 2, 0 USER_LIMIT_REACHED | 3, retry_ms RATE_LIMITED
]]
--@include bucket.lua

local ready = redis.call('GET', KEYS[1]) == ARGV[1]
local limit, now = tonumber(ARGV[2]), tonumber(ARGV[3])

local function checkout(user, index, new_code, user_bucket, ip_bucket)
  if not ready then return -1, 0 end
  local wait = charge(ip_bucket, user_bucket, now, ARGV[4], ARGV[5], ARGV[6], ARGV[7])
  if wait > 0 then return 3, wait end
  local field = user .. '|' .. index
  local code = redis.call('HGET', KEYS[5], field)
  local sold = redis.call('HGET', KEYS[2], index)
  if sold then
    if code and string.sub(sold, 1, #code + 1) == code .. '|' then return 0, code end
    return 1, 0
  end
  if (tonumber(redis.call('HGET', KEYS[3], user)) or 0) >= limit then return 2, 0 end
  if code then return 0, code end
  redis.call('HSET', KEYS[5], field, new_code)
  redis.call('HSET', KEYS[4], new_code, field)
  return 0, new_code
end

local replies = {}
for i = 1, (#KEYS - 5) / 2 do
  replies[2 * i - 1], replies[2 * i] =
    checkout(ARGV[5 + 3 * i], ARGV[6 + 3 * i], ARGV[7 + 3 * i], KEYS[4 + 2 * i], KEYS[5 + 2 * i])
end
return replies
