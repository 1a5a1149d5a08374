-- The stampede: random users check out random items of the sale, and every
-- code returned is purchased at once. Env: SALE (sale id), ITEMS.
-- The codes wait in a queue: wrk reads every response that is ready before
-- it writes the next requests, so one variable would keep only the last of
-- them and drop the others' purchases.
local sale, items = os.getenv("SALE"), tonumber(os.getenv("ITEMS"))
local codes, first, last = {}, 1, 0
function init() math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16) % 100000) end
function request()
  if first <= last then
    local c = codes[first]
    codes[first], first = nil, first + 1
    return wrk.format("POST", "/purchase?code=" .. c)
  end
  return wrk.format("POST", string.format("/checkout?user_id=u%d&id=%s-%05d", math.random(200000), sale, math.random(0, items - 1)))
end
function response(status, headers, body)
  local c = status == 200 and body:match('"code":"([^"]+)"')
  if c then
    last = last + 1
    codes[last] = c
  end
end
