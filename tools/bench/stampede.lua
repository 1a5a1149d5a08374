-- The stampede: random users check out random items of the sale, and every
-- code returned is purchased at once. Env: SALE (sale id), ITEMS.
local sale, items = os.getenv("SALE"), tonumber(os.getenv("ITEMS"))
local code = nil
function init() math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16) % 100000) end
function request()
  if code then
    local c = code; code = nil
    return wrk.format("POST", "/purchase?code=" .. c)
  end
  return wrk.format("POST", string.format("/checkout?user_id=u%d&id=%s-%05d", math.random(200000), sale, math.random(0, items - 1)))
end
function response(status, headers, body)
  if status == 200 then code = body:match('"code":"([^"]+)"') end
end
