-- wrk script of corral's peers benchmark: counts the responses of each
-- worker process and when the first of each arrived.
--
-- Every app in the benchmark names its process in the body ("..., pid P"),
-- so the body itself is the key: no pattern matching per response, only a
-- table lookup. What it costs wrk is that, with a response() function
-- defined, wrk hands every response's headers and body to Lua; the
-- benchmark measures that cost (a hello run with and without this script).
-- The clock is read only for a body not seen before.
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } peers_timespec;
int clock_gettime(int clock, peers_timespec *tp);
]]
local ts = ffi.new("peers_timespec")

-- CLOCK_REALTIME (0) in milliseconds, to compare with the time of a kill.
local function now()
  ffi.C.clock_gettime(0, ts)
  return tonumber(ts.tv_sec) * 1e3 + tonumber(ts.tv_nsec) / 1e6
end

counts, first = {}, {}

function response(status, headers, body)
  local n = counts[body]
  if n then
    counts[body] = n + 1
  else
    counts[body] = 1
    first[body] = now()
  end
end

local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

-- One line per body: "peers: pid P responses N first MS" (pid "-" when the
-- body names none, such as an error page). wrk runs this script with the
-- benchmarks' report (test/wrk), whose done() calls extra_done first.
function extra_done(summary, latency, requests)
  for _, t in ipairs(threads) do
    local c, f = t:get("counts"), t:get("first")
    for body, n in pairs(c) do
      io.write(string.format("peers: pid %s responses %d first %.3f\n",
        body:match("pid (%d+)") or "-", n, f[body]))
    end
  end
end
