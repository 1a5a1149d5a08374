--[[
  Waiting room join: one place per user per sale, decided here so that two
  instances (or a double click) never give one user two places.

  KEYS[1] sold     the sale's hash item index -> purchase (HLEN - 1 items taken:
                   it holds a placeholder field once loaded; missing = not loaded)
  KEYS[2] state    hash of the room (written by queue-advance): `started` once admission began
  KEYS[3] users    hash user -> "p<key>|<joined_ms>" (pre-queue) or "n<number>|<joined_ms>"
  KEYS[4] pre      zset of pre-queue users by their random key (the shuffle)
  KEYS[5] seq      counter of joins after the start (first come, first served)
  KEYS[6] ip bucket (token bucket)
  ARGV[1] user  ARGV[2] now (ms)  ARGV[3] sale start (ms)  ARGV[4] items in the sale
  ARGV[5] random key for a pre-queue place: an integer below 2^48, as a decimal string
  ARGV[6] ip rate/s  ARGV[7] ip burst  ARGV[8] expire the room's keys at (ms)

  Returns {0, entry} the user's existing place | {1, entry} a new place
  | {2} SOLD_OUT | {3, retry_ms} RATE_LIMITED
]]
--@include bucket.lua
local now = tonumber(ARGV[2])
local wait = take(KEYS[6], tonumber(ARGV[6]), tonumber(ARGV[7]), now)
if wait > 0 then return {3, wait} end

local taken = redis.call('HLEN', KEYS[1])
if taken > 0 and taken - 1 >= tonumber(ARGV[4]) then return {2} end

local existing = redis.call('HGET', KEYS[3], ARGV[1])
if existing then return {0, existing} end

-- The pre-queue closes when admission starts, whichever instance's clock says so
-- first: a late pre-queue key could land below the admission threshold.
local place
if now < tonumber(ARGV[3]) and redis.call('HEXISTS', KEYS[2], 'started') == 0 then
  redis.call('ZADD', KEYS[4], ARGV[5], ARGV[1])
  place = 'p' .. ARGV[5]
else
  place = 'n' .. redis.call('INCR', KEYS[5])
end
local entry = place .. '|' .. ARGV[2]
redis.call('HSET', KEYS[3], ARGV[1], entry)
for i = 3, 5 do redis.call('PEXPIREAT', KEYS[i], ARGV[8]) end
return {1, entry}
