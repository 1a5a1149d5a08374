--[[
  Purchase: take the code's lock, then reserve the item and the user's lowest
  free slot atomically. PostgreSQL confirms the reservation afterwards; if it
  cannot, release-3.lua undoes it. A reservation already held by this code
  (a replay, or an earlier attempt that crashed) is returned as it is, so
  confirming it is idempotent.

  KEYS[1] ready  KEYS[2] sold  KEYS[3] users  KEYS[4] owners (see checkout-5+2n.lua)
  KEYS[5] lock   the code's purchase lock (string: owner token)
  KEYS[6] code bucket, KEYS[7] ip bucket (token buckets)
  ARGV[1] id of this Redis server (see checkout-5+2n.lua)  ARGV[2] code  ARGV[3] user limit
  ARGV[4] lock token  ARGV[5] lock ttl (ms)  ARGV[6] now (ms)
  ARGV[7] code rate/s  ARGV[8] code burst  ARGV[9] ip rate/s  ARGV[10] ip burst
  ARGV[11] 1 to charge the buckets, 0 when the same request calls again (waiting
           for the lock, after a rebuild or a conflict): one request, one token
  ARGV[12] the buyer the caller verified (AUTH=jwt), or '' to skip the check

  Returns {0, user, index, slot, purchased_at_ms, fresh} reserved, lock held
  (fresh = 1 when reserved by this call, 0 when the code already held it)
  | {-1} not ready | {1} CODE_NOT_FOUND | {2} lock held by another request
  | {3, index} ITEM_SOLD | {4} USER_LIMIT_REACHED | {5, retry_ms} RATE_LIMITED
  | {6} the code belongs to another user than ARGV[12]: nothing locked or
  reserved, and the code's own bucket is not charged (knowing a code must not
  let anyone rate-limit its owner); the client IP's bucket is.
]]
--@include bucket.lua

if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {-1} end
local now = tonumber(ARGV[6])
local code = ARGV[2]
local owner = redis.call('HGET', KEYS[4], code)
local user, index
if owner then
  local sep = string.find(owner, '|', 1, true)
  user, index = string.sub(owner, 1, sep - 1), string.sub(owner, sep + 1)
end
if ARGV[12] ~= '' and owner and user ~= ARGV[12] then
  if ARGV[11] == '1' then
    local wait = take(KEYS[7], tonumber(ARGV[9]), tonumber(ARGV[10]), now)
    if wait > 0 then return {5, wait} end
  end
  return {6}
end
if ARGV[11] == '1' then
  local wait = charge(KEYS[7], KEYS[6], now, ARGV[7], ARGV[8], ARGV[9], ARGV[10])
  if wait > 0 then return {5, wait} end
end

if not owner then return {1} end
if not redis.call('SET', KEYS[5], ARGV[4], 'NX', 'PX', ARGV[5]) then return {2} end

local sold = redis.call('HGET', KEYS[2], index)
if sold then
  local c, slot, at = string.match(sold, '^([^|]+)|([^|]+)|([^|]+)$')
  if c == code then return {0, user, index, tonumber(slot), tonumber(at), 0} end
  redis.call('DEL', KEYS[5])
  return {3, index}
end
local limit = tonumber(ARGV[3])
if (tonumber(redis.call('HGET', KEYS[3], user)) or 0) >= limit then
  redis.call('DEL', KEYS[5])
  return {4}
end
for slot = 1, limit do
  if redis.call('HSETNX', KEYS[3], user .. '|' .. slot, index) == 1 then
    redis.call('HINCRBY', KEYS[3], user, 1)
    redis.call('HSET', KEYS[2], index, code .. '|' .. slot .. '|' .. now)
    return {0, user, index, slot, now, 1}
  end
end
-- The count said there was room but every slot is taken: the count drifted.
redis.call('HSET', KEYS[3], user, limit)
redis.call('DEL', KEYS[5])
return {4}
