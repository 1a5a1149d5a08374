-- Waiting-room status polls of valid tickets: each request polls a ticket
-- taken at random from the file the bench wrote (one per line). Env: TICKETS.
-- The requests are formatted once, in init: formatting one per request would
-- spend the load generator's CPU, on the same two cores as the service.
local requests = {}
function init()
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16) % 100000)
  for line in io.lines(os.getenv("TICKETS")) do
    requests[#requests + 1] = wrk.format("GET", "/queue/status?ticket=" .. line)
  end
end
function request()
  return requests[math.random(#requests)]
end
