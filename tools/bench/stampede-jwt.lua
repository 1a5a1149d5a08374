-- The stampede with bearer tokens: as stampede.lua, but each user u<i> sends
-- its own token (line i of the file TOKENS). The purchase uses the token of the
-- user its checkout answered for: one wrk thread's connections share this
-- state, so the user is read back from the answer, not remembered.
-- Against AUTH=off the same requests are sent and the header is ignored.
-- Env: SALE, ITEMS, TOKENS.
local sale, items = os.getenv("SALE"), tonumber(os.getenv("ITEMS"))
local tokens = {}
local codes, owners, first, last = {}, {}, 1, 0
function init()
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16) % 100000)
  for line in io.lines(os.getenv("TOKENS")) do tokens[#tokens + 1] = "Bearer " .. line end
end
function request()
  if first <= last then
    local c, u = codes[first], owners[first]
    codes[first], owners[first], first = nil, nil, first + 1
    return wrk.format("POST", "/purchase?code=" .. c, { Authorization = tokens[u] })
  end
  local u = math.random(#tokens)
  local url = string.format("/checkout?user_id=u%d&id=%s-%05d", u, sale, math.random(0, items - 1))
  return wrk.format("POST", url, { Authorization = tokens[u] })
end
function response(status, headers, body)
  if status ~= 200 then return end
  local c, u = body:match('"code":"([^"]+)"'), tonumber(body:match('"user_id":"u(%d+)"'))
  if c and u then
    last = last + 1
    codes[last], owners[last] = c, u
  end
end
