--[[
  Waiting room counters, read by every instance on its timer (never per poll).

  KEYS[1] state  KEYS[2] pre  KEYS[3] seq  KEYS[4] sold (see queue-advance-7.lua)
  ARGV: none

  Returns {started, pre, admitted, expired, threshold, expired_threshold, rate,
  pre_joined, joined_after_start, sold_hlen}: state fields as strings (false
  when unset), then ZCARD pre, the seq counter, and HLEN sold (0 = not loaded).
]]
local s = redis.call('HMGET', KEYS[1], 'started', 'pre', 'admitted', 'expired', 'threshold', 'expired_threshold',
  'rate')
s[8] = redis.call('ZCARD', KEYS[2])
s[9] = tonumber(redis.call('GET', KEYS[3])) or 0
s[10] = redis.call('HLEN', KEYS[4])
return s
