-- wrk script: POST /v1/completions with a fixed body and check every
-- response.  Environment:
--   SERVE_BODY    the JSON request body
--   SERVE_EXPECT  the expected completion text as a JSON string, quotes
--                 included (e.g. "\", there\""), so the match is the whole
--                 value of "text", not a prefix of it
-- done() prints one line that bench/serve.sh parses:
--   RESULT requests=N duration_us=N rps=X p50_us=N p99_us=N bad=N
--          errors=N
wrk.method = "POST"
wrk.path = "/v1/completions"
wrk.body = os.getenv("SERVE_BODY")
wrk.headers["Content-Type"] = "application/json"

local expect = os.getenv("SERVE_EXPECT")
local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    bad = 0
end

-- A body counts as bad when the status is not 200 or the text differs.
-- Both servers write compact JSON; a space after the colon is allowed.
function response(status, headers, body)
    if status ~= 200
       or not (string.find(body, '"text":' .. expect, 1, true)
               or string.find(body, '"text": ' .. expect, 1, true))
    then
        bad = bad + 1
    end
end

function done(summary, latency, requests)
    local nbad = 0
    for _, t in ipairs(threads) do
        nbad = nbad + t:get("bad")
    end
    local e = summary.errors
    io.write(string.format(
        "RESULT requests=%d duration_us=%d rps=%.2f p50_us=%d p99_us=%d " ..
        "bad=%d errors=%d\n",
        summary.requests, summary.duration,
        summary.requests / (summary.duration / 1e6),
        latency:percentile(50), latency:percentile(99), nbad,
        e.connect + e.read + e.write + e.status + e.timeout))
end
