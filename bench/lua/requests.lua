-- Load script for wrk used by bench/run.ts.
-- args: <requests file> <threads> <wrap|once>
-- Each line of the requests file is one request: METHOD<TAB>PATH<TAB>BEARER<TAB>JSON BODY (empty fields allowed).
-- Threads take disjoint lines (line i goes to thread i % threads), then cycle over them; with "once" a thread
-- that runs out keeps repeating its last request (a spent refresh token: counted as an error, never hidden).
-- Status codes are counted per thread and printed by done() as one JSON line starting with BENCH_JSON.

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local reqs = {}
local n = 0
local idx = 0
local once = false
counts = {}

function init(args)
  local file = args[1]
  local nthreads = tonumber(args[2]) or 1
  once = args[3] == "once"
  local i = 0
  for line in io.lines(file) do
    if i % nthreads == tid then
      local m, p, tok, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
      local h = {}
      if tok ~= "" then h["Authorization"] = "Bearer " .. tok end
      if body ~= "" then h["Content-Type"] = "application/json" else body = nil end
      n = n + 1
      reqs[n] = wrk.format(m, p, h, body)
    end
    i = i + 1
  end
  if n == 0 then error("no requests for thread " .. tid) end
end

function request()
  idx = idx + 1
  if idx > n then
    if once then idx = n else idx = 1 end
  end
  return reqs[idx]
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
  local agg = {}
  for _, t in ipairs(threads) do
    local c = t:get("counts")
    if c then
      for k, v in pairs(c) do agg[k] = (agg[k] or 0) + v end
    end
  end
  local parts = {}
  for k, v in pairs(agg) do table.insert(parts, string.format('"%d":%d', k, v)) end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"durationUs":%d,"p50Us":%d,"p90Us":%d,"p95Us":%d,"p99Us":%d,"p999Us":%d,"maxUs":%d,"meanUs":%f,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},"statuses":{%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean, e.connect, e.read, e.write, e.status, e.timeout, table.concat(parts, ",")))
end
