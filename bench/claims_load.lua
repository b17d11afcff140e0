-- wrk script for bench/claims_load.py: POST /tokenversion/claims as Keycloak's mapper does at token issue.
-- Each request names a random user out of TV_USERS provisioned ones (subject, username, email as seeded),
-- so the steady state is measured: the user exists and nothing about it changed.
-- TV_NEW=1 instead names subjects never seen (first logins: a version row and a user row are created).
-- done() prints one "JSON {...}" line that the Python driver parses.

local users = tonumber(os.getenv("TV_USERS") or "10000")
local new_users = os.getenv("TV_NEW") == "1"
local counter = 0
local thread_id = 0

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-TokenVersion-Secret"] = os.getenv("TV_SECRET") or ""

local threads = {}

function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() * 1000 + thread_id)
  -- new subjects: "<pid-ish stamp>-<thread>-<counter>", unique across runs
  stamp = string.format("%x%x", os.time(), math.random(0, 0xffff))
end

-- The same subject/username/email scheme as the seeding in claims_load.py (subject_of, user_row).
local function body_for(i)
  local sub = string.format("%08x-0000-4000-8000-%012x", i, i)
  return string.format(
    '{"sub":"%s","username":"user%d","email":"user%d@example.com","client_id":"web","session_id":"s-%d"}',
    sub, i, i, i)
end

request = function()
  if new_users then
    counter = counter + 1
    local sub = string.format("new-%s-%d-%d", stamp, thread_id, counter)
    local body = string.format('{"sub":"%s","username":"%s","client_id":"web"}', sub, sub)
    return wrk.format(nil, nil, nil, body)
  end
  return wrk.format(nil, nil, nil, body_for(math.random(0, users - 1)))
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'JSON {"requests":%d,"duration_us":%d,"status_errors":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,' ..
    '"mean_us":%.1f}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
