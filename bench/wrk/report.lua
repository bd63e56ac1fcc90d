-- wrk script for the byoc benchmarks: sends "Authorization: Bearer $BYOC_BENCH_TOKEN" when that variable is
-- set (no header otherwise, e.g. for /healthz), sends BYOC_BENCH_BODY as a JSON POST when that is set (the
-- availability baseline asks the fake Google's free/busy), and prints one machine-readable summary line at the end:
--   WRK_JSON {"requests":…,"rps":…,"status_errors":…,"socket_errors":…,"p50_us":…,"p99_us":…,…}
-- status_errors is wrk's count of responses with a status of 400 or more; socket_errors adds up connect,
-- read, write and timeout errors. Latencies are in microseconds.
local token = os.getenv("BYOC_BENCH_TOKEN")
if token ~= nil and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end
local body = os.getenv("BYOC_BENCH_BODY")
if body ~= nil and body ~= "" then
  wrk.method = "POST"
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end

done = function(summary, latency, requests)
  local errors = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format(
    'WRK_JSON {"requests":%d,"seconds":%.3f,"rps":%.1f,"status_errors":%d,"socket_errors":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, seconds, summary.requests / seconds, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    errors.connect, errors.read, errors.write, errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
