-- Checkout only: random users check out random items; nobody buys, so every
-- checkout issues (or returns) a code and writes its attempt. Env: SALE, ITEMS.
local sale, items = os.getenv("SALE"), tonumber(os.getenv("ITEMS"))
function init() math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16) % 100000) end
function request()
  return wrk.format("POST", string.format("/checkout?user_id=u%d&id=%s-%05d", math.random(200000), sale, math.random(0, items - 1)))
end
