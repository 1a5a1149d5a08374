-- Checkout only: random users check out random items; nobody buys, so every
-- checkout issues (or returns) a code and writes its attempt. Env: SALE, ITEMS;
-- DELAY_MS (optional) paces each connection: that long between its answer and
-- its next request, a steady load below the machine's capacity (retention.ts).
local sale, items = os.getenv("SALE"), tonumber(os.getenv("ITEMS"))
local pause = tonumber(os.getenv("DELAY_MS") or "")
function init() math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16) % 100000) end
function request()
  return wrk.format("POST", string.format("/checkout?user_id=u%d&id=%s-%05d", math.random(200000), sale, math.random(0, items - 1)))
end
if pause then
  function delay() return pause end
end
