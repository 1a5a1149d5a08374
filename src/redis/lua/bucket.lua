--[[
  Included by other scripts (--@include bucket.lua), never run alone.
  take(key, rate, burst, now): a token bucket kept as a hash {t = tokens, at = ms}.
  rate is tokens per second; 0 turns the bucket off.
  Returns 0 when a token was taken, else the milliseconds until one is free.
  charge(ip_key, own_key, now, own_rate, own_burst, ip_rate, ip_burst): one token
  from the client IP's bucket, then one from the user's (or the code's).
  Returns 0 when both were taken, else the milliseconds to wait.
]]
local function take(key, rate, burst, now)
  if rate <= 0 then return 0 end
  local state = redis.call('HMGET', key, 't', 'at')
  local tokens = tonumber(state[1]) or burst
  local at = tonumber(state[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
  if tokens < 1 then
    return math.ceil((1 - tokens) * 1000 / rate)
  end
  redis.call('HSET', key, 't', tokens - 1, 'at', now)
  redis.call('PEXPIRE', key, math.ceil(burst * 1000 / rate) + 1000)
  return 0
end

local function charge(ip_key, own_key, now, own_rate, own_burst, ip_rate, ip_burst)
  local wait = take(ip_key, tonumber(ip_rate), tonumber(ip_burst), now)
  if wait == 0 then wait = take(own_key, tonumber(own_rate), tonumber(own_burst), now) end
  return wait
end
