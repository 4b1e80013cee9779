-- wrk script for the benchmarks, configured through the environment:
--   BENCH_HEADER_NAME, BENCH_HEADER_VALUE  a header sent with every request (optional)
--   BENCH_KEYSPACE=N       X-API-Key tgb_<7-digit i> with a random i in [0, N) per request
--   BENCH_KEYS_FROM=F      X-API-Key tgb_<7-digit i> with i = F, F+1, ...
-- bench/load.py runs wrk with one thread. done() prints one JSON line with the run's totals;
-- latencies are in microseconds.

local header_name = os.getenv("BENCH_HEADER_NAME")
local keyspace = tonumber(os.getenv("BENCH_KEYSPACE") or "")
local next_key = tonumber(os.getenv("BENCH_KEYS_FROM") or "")

local function with_key(i)
   return wrk.format(nil, nil, { ["X-API-Key"] = string.format("tgb_%07d", i) })
end

function init(args)
   math.randomseed(os.time())
   if header_name then
      wrk.headers[header_name] = os.getenv("BENCH_HEADER_VALUE")
   end
end

if keyspace then
   function request()
      return with_key(math.random(0, keyspace - 1))
   end
elseif next_key then
   function request()
      next_key = next_key + 1
      return with_key(next_key - 1)
   end
end

function done(summary, latency, requests)
   local errors = summary.errors
   io.write(string.format(
      '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "status_errors": %d, "socket_errors": %d}\n',
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
      errors.status, errors.connect + errors.read + errors.write + errors.timeout))
end
