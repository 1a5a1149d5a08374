-- Waiting-room status polls of valid tickets: each request polls a ticket
-- taken at random from the file the bench wrote (one per line). Env: TICKETS.
local tickets = {}
function init()
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16) % 100000)
  for line in io.lines(os.getenv("TICKETS")) do tickets[#tickets + 1] = line end
end
function request()
  return wrk.format("GET", "/queue/status?ticket=" .. tickets[math.random(#tickets)])
end
