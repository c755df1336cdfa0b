-- wrk script used by bench/run.sh: after the run, print one machine-readable line
--   WRKJSON {"requests":...,"rps":...,"p50_us":...,...}
-- Only the done() hook is defined, so wrk keeps its fast C request path (no per-request Lua).
-- Latencies are in microseconds. err_status counts responses with status >= 400 (wrk's own
-- rule); the benchmark's backend only ever answers 200.

done = function(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  local rps = 0
  if secs > 0 then rps = summary.requests / secs end
  io.write(string.format(
    'WRKJSON {"requests":%.0f,"duration_us":%.0f,"bytes":%.0f,"rps":%.1f,' ..
    '"p50_us":%.0f,"p90_us":%.0f,"p99_us":%.0f,"p999_us":%.0f,"max_us":%.0f,' ..
    '"mean_us":%.1f,"stdev_us":%.1f,' ..
    '"err_connect":%.0f,"err_read":%.0f,"err_write":%.0f,"err_timeout":%.0f,"err_status":%.0f}\n',
    summary.requests, summary.duration, summary.bytes, rps,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean, latency.stdev,
    e.connect, e.read, e.write, e.timeout, e.status))
end
