-- wrk's report for corral's benchmarks, as one line of JSON: wrk's own
-- figures, read without scraping its text. A caller's script comes
-- before this one in the same file and may define extra_done, which runs
-- first (wrk takes one script).
function done(summary, latency, requests)
  if extra_done then
    extra_done(summary, latency, requests)
  end
  local e = summary.errors
  io.write(string.format(
    'wrk-json: {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"p50_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
