-- Waiting-room joins: random users (most of them new) take a place.
function init() math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16) % 100000) end
function request()
  return wrk.format("POST", string.format("/queue/join?user_id=j%d", math.random(100000000)))
end
