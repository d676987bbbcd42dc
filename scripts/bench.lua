-- wrk script for `make bench` (scripts/bench.py): every request carries one of the real
-- deployment tokens listed in BENCH_TOKENS, in turn; BENCH_METHOD, BENCH_BODY and BENCH_ETAG
-- (sent as If-None-Match) shape the request. Prints one JSON line of results at the end.
local method = os.getenv("BENCH_METHOD") or "GET"
local body = os.getenv("BENCH_BODY")
local etag = os.getenv("BENCH_ETAG")
local tokens_file = os.getenv("BENCH_TOKENS")
local prepared = {}
local sent = 0

function init(args)
  local headers = {}
  if etag then headers["If-None-Match"] = etag end
  if body then headers["Content-Type"] = "application/json" end
  if tokens_file then
    for token in io.lines(tokens_file) do
      if #token > 0 then
        headers["Authorization"] = "Bearer " .. token
        table.insert(prepared, wrk.format(method, nil, headers, body))
      end
    end
  end
  if #prepared == 0 then
    table.insert(prepared, wrk.format(method, nil, headers, body))
  end
end

function request()
  sent = sent + 1
  return prepared[(sent % #prepared) + 1]
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, errors.connect, errors.read, errors.write,
    errors.status, errors.timeout, latency:percentile(50), latency:percentile(99)))
end
