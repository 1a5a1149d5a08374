-- Purchase-heavy: a checkout's code is purchased three times (the first buys
-- or loses the race, the others replay). Only one code is pending at a time:
-- one that arrives meanwhile is not purchased, so its item stays unsold and a
-- 10,000-item sale lasts the whole load. Measured (2026-12-01): about a
-- quarter of the requests are purchases, two thirds of them replays.
-- Env: SALE, ITEMS.
local sale, items = os.getenv("SALE"), tonumber(os.getenv("ITEMS"))
local code, left = nil, 0
function init() math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16) % 100000) end
function request()
  if code and left > 0 then
    left = left - 1
    return wrk.format("POST", "/purchase?code=" .. code)
  end
  code = nil
  return wrk.format("POST", string.format("/checkout?user_id=u%d&id=%s-%05d", math.random(200000), sale, math.random(0, items - 1)))
end
function response(status, headers, body)
  if not code and status == 200 then
    code = body:match('"code":"([^"]+)"')
    left = 3
  end
end
