--[[
  Waiting room: an admitted person who bought is done, and leaves the crowd the
  stock bound counts (queue-advance-7.lua) while their admission is within the
  TTL. Run once per successful purchase with the room on; one member per
  person, so further purchases (up to USER_LIMIT) change nothing.

  KEYS[1] done   zset user -> place in the admission order (pre-queue key, or 2^48 + join number)
  ARGV[1] user  ARGV[2] the place's score  ARGV[3] expire the room's keys at (ms)

  Returns 1 newly done | 0 done already
]]
local added = redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return added
