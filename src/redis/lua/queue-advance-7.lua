--[[
  Waiting room admission, one step: run by every instance on its timer; only
  the holder of the lease advances, so admission runs at the configured rate
  whatever the number of instances, and moves on to another instance within
  one lease time when its holder dies.

  Order of admission: the pre-queue first, by random key (the shuffle drawn at
  join), then joins after the start by number. `admitted` counts both; the
  published `threshold` is the key of the last admitted pre-queue place, so a
  ticket says by itself whether it is in (key <= threshold, or pre + number <= admitted).

  KEYS[1] lease    the advancing instance's token (PX)
  KEYS[2] state    hash: started, pre (pre-queue size, frozen at the start), t (last step, ms),
                   carry (admissions owed, fractional), admitted, expired (admitted more than
                   the TTL ago), threshold, expired_threshold, rate, remaining, done (buyers within the TTL)
  KEYS[3] pre      zset user -> random key
  KEYS[4] seq      joins after the start
  KEYS[5] log      zset admitted count -> when it was reached (ms), kept for the TTL
  KEYS[6] sold     the sale's sold hash (HLEN - 1 items taken; missing = not loaded yet)
  KEYS[7] done     zset user -> place in the admission order of people who bought (queue-done-1.lua):
                   a pre-queue key, or 2^48 + join number; trimmed here to those within the TTL
  ARGV[1] lease token  ARGV[2] lease ms  ARGV[3] now (ms)  ARGV[4] sale start (ms)
  ARGV[5] rate (admissions per second, may be fractional)  ARGV[6] items in the sale
  ARGV[7] stock factor  ARGV[8] admission TTL (ms)  ARGV[9] longest catch-up (ms)
  ARGV[10] expire the room's keys at (ms)

  Returns {0} another instance holds the lease | {1, admitted_now, admitted, remaining}
]]
local held = redis.call('GET', KEYS[1])
if held and held ~= ARGV[1] then return {0} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])

local now, start = tonumber(ARGV[3]), tonumber(ARGV[4])
if now < start then return {1, 0, 0, -1} end

local s = redis.call('HMGET', KEYS[2], 'started', 'pre', 't', 'carry', 'admitted')
local pre, t, carry, admitted
if not s[1] then
  pre, t, carry, admitted = redis.call('ZCARD', KEYS[3]), start, 0, 0
  redis.call('HSET', KEYS[2], 'started', '1', 'pre', pre)
else
  pre, t, carry, admitted = tonumber(s[2]), tonumber(s[3]), tonumber(s[4]), tonumber(s[5])
end

local rate = tonumber(ARGV[5])
-- A stalled advancer (or a new one) catches up by at most ARGV[9] ms of admissions.
local budget = math.min(carry + rate * math.max(0, now - t) / 1000, math.max(1, rate * tonumber(ARGV[9]) / 1000))
local waiting = pre + (tonumber(redis.call('GET', KEYS[4])) or 0) - admitted

-- Keys as Redis formats them (exact to 2^53; Lua's tostring would round to 14 digits).
local function threshold(n)
  if n <= 0 then return '-1' end
  if n >= pre then return '281474976710656' end
  return redis.call('ZRANGE', KEYS[3], n - 1, n - 1, 'WITHSCORES')[2]
end
-- The score bounding the first n places of the admission order (pre-queue keys, then 2^48 + number).
local function order(n)
  if n < pre then return threshold(n) end
  return string.format('%.0f', 281474976710656 + n - pre)
end

local ttl = tonumber(ARGV[8])
local old = redis.call('ZREVRANGEBYSCORE', KEYS[5], now - ttl, '-inf', 'WITHSCORES', 'LIMIT', 0, 1)
local expired = tonumber(old[1]) or 0
if old[2] then redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', '(' .. old[2]) end
-- Buyers admitted before the TTL window are among the expired already: out of the done set.
redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', order(expired))
local done = redis.call('ZCARD', KEYS[7])

local taken = redis.call('HLEN', KEYS[6])
local remaining = tonumber(ARGV[6])
if taken > 0 then remaining = remaining - (taken - 1) end
-- Inventory-aware: admitted people within their TTL who have not bought stay under factor x items
-- remaining. Each buyer took an item, so done <= items taken and the admitted within the TTL stay
-- under factor x items of the sale (docs/waiting-room.md, "Inventory-aware").
local room = math.max(0, tonumber(ARGV[7]) * remaining - (admitted - expired - done))
local admit = math.max(0, math.min(math.floor(budget), waiting, room))
admitted = admitted + admit
if admit > 0 then redis.call('ZADD', KEYS[5], 'NX', now, admitted) end
redis.call('HSET', KEYS[2], 't', now, 'carry', budget - admit, 'admitted', admitted, 'expired', expired,
  'threshold', threshold(admitted), 'expired_threshold', threshold(expired), 'rate', ARGV[5],
  'remaining', remaining, 'done', done)
redis.call('PEXPIREAT', KEYS[2], ARGV[10])
redis.call('PEXPIREAT', KEYS[5], ARGV[10])
return {1, admit, admitted, remaining}
