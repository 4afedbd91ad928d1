-- wrk script: sends the pre-signed /sec/kill paths of a file, one per request, in order.
--
--   seckill-bench --product-ids 3 --wrk-file /tmp/paths --wrk-count 1000000
--   wrk -t1 -c64 -d10s -s bench/wrk-paths.lua http://127.0.0.1:8082 -- /tmp/paths [THREADS]
--
-- Every line carries its own nance, so the file must hold at least as many lines as wrk sends: a wrapped file
-- replays old nances, and the access node answers those 1003 (SPEC §3 step 5), not what you meant to measure.
-- The signatures are valid for auth.window seconds (default 60) after the file was written.
-- With -tN give THREADS = N: thread i then sends lines i, i+N, ... so that no two threads send the same line.
-- At the end it prints one JSON line: requests, req/s, answers by HTTP status, times the file wrapped, latency.

local threads = {}
local nthreads_setup = 0

function setup(thread)
    thread:set("id", nthreads_setup)
    nthreads_setup = nthreads_setup + 1
    table.insert(threads, thread)
end

function init(args)
    local path = args[1] or os.getenv("SK_WRK_PATHS")
    if path == nil then
        error("wrk-paths.lua: name the paths file: wrk ... -s bench/wrk-paths.lua URL -- FILE [THREADS]")
    end
    file = assert(io.open(path, "r"))
    stride = tonumber(args[2] or "1")
    counts = {}
    wrapped = 0
    skip = id -- this thread's first line
end

local function next_line()
    for _ = 1, 2 do
        local line = file:read("*l")
        while line ~= nil and skip > 0 do
            skip = skip - 1
            line = file:read("*l")
        end
        if line ~= nil and line ~= "" then
            skip = stride - 1
            return line
        end
        file:seek("set", 0)
        wrapped = wrapped + 1
        skip = id
    end
    error("wrk-paths.lua: the paths file has no line for this thread")
end

function request()
    return wrk.format("GET", next_line())
end

function response(status, headers, body)
    counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
    local status, wraps = {}, 0
    for _, t in ipairs(threads) do
        for k, v in pairs(t:get("counts") or {}) do
            status[k] = (status[k] or 0) + v
        end
        wraps = wraps + (t:get("wrapped") or 0)
    end
    local parts = {}
    for k, v in pairs(status) do
        table.insert(parts, string.format('"%d":%d', k, v))
    end
    local secs = summary.duration / 1e6
    local e = summary.errors
    io.write(string.format('{"wrk":{"requests":%d,"seconds":%.3f,"rps":%.1f,"status":{%s},"wrapped":%d,' ..
                               '"errors":%d,"latency_us":{"p50":%.1f,"p90":%.1f,"p99":%.1f,"p999":%.1f,"max":%.1f}}}\n',
        summary.requests, secs, summary.requests / secs, table.concat(parts, ","), wraps,
        e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(90),
        latency:percentile(99), latency:percentile(99.9), latency.max))
end
