-- wrk script: POST the review in $BENCH_BODY on every request (kept-alive connections),
-- and print one machine-readable line with throughput and latency percentiles (µs).
local path = os.getenv("BENCH_BODY") or error("set BENCH_BODY to the review file")
local file = assert(io.open(path, "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"

-- A body with the marker __FRESH__ (the validate-fresh load) gets 24 characters of JSON
-- whitespace in its place, spaces and escaped tabs spelling a number in binary: consecutive
-- requests send different ConfigMaps, which defeats the server's reuse of its last verdict.
-- The requests are formatted once, in init(), and cycled through: building each body in
-- request() held wrk itself to about 48,000 requests/s, below what the servers manage.
local template = wrk.body
if template:find("__FRESH__", 1, true) then
  local pool, size, next_index = {}, 4096, 0
  function init(args)
    for n = 1, size do
      local pad, bits = {}, n
      for i = 1, 24 do
        pad[i] = (bits % 2 == 1) and "\\t" or " "
        bits = math.floor(bits / 2)
      end
      local body = template:gsub("__FRESH__", table.concat(pad), 1)
      pool[n] = wrk.format(nil, nil, nil, body)
    end
  end
  function request()
    next_index = next_index % size + 1
    return pool[next_index]
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format(
    "BENCH requests=%d seconds=%.3f rps=%.1f p50_us=%d p99_us=%d p999_us=%d max_us=%d "
      .. "connect_errors=%d read_errors=%d write_errors=%d status_errors=%d timeouts=%d\n",
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
