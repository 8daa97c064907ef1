-- POST /v1/events for wrk: SDK purchase events with unique event ids (thread number + counter).
--
--   wrk -t1 -c32 -d10s -s bench/lua/events.lua URL/v1/events -- KEY EVENTS_PER_REQUEST RATE THREADS RUN
--
-- EVENTS_PER_REQUEST 1 sends the single-event form, more sends {"events": [...]}.
-- RATE is the total requests per second to pace at (0: as fast as the server answers). Pacing keeps a
-- per-thread schedule and delays each connection's next request to its slot; latency is measured by wrk
-- from the moment a request is written, so it is the service time at that offered rate.
-- done() prints one line `BENCH_JSON {...}` that bench/wrk.py reads.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local timespec = ffi.new("bench_timespec")

local function now_us()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
  return tonumber(timespec.tv_sec) * 1e6 + tonumber(timespec.tv_nsec) / 1e3
end

local thread_count = 0
function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_number", thread_count)
end

local per_request, interval_us, next_at, headers
local counter = 0
local pieces = {}

-- Only the request counter changes from one request to the next (in the event id and the device id, so
-- records spread over partitions as real devices do): a body is one table.concat of prepared pieces,
-- and wrk does not steal CPU the servers need even at 100 events per request.
local function event_pieces(run, slot, event_time)
  local sep = (slot == 1) and "" or ","
  return {
    sep .. '{"event_id":"' .. run .. "-" .. thread_number .. "-",
    false,
    string.format('-%d","event_name":"purchase","event_time":%d,"device":{"device_id":"bench-%d-', slot,
      event_time, thread_number),
    false,
    string.format('-%d","os":"android","os_version":"14","model":"Pixel 8","locale":"en_US",' ..
      '"gaid":"6f1c2d3e-4b5a-4c6d-8e7f-%012d"},"user":{"email":"buyer%d@example.com","external_id":"user-%d"},' ..
      '"revenue":{"amount":4.99,"currency":"USD"},"properties":{"sku":"coins_100","screen":"store"}}',
      slot, slot, slot, slot),
  }
end

local counter_slots = {}

function init(args)
  local key = args[1]
  per_request = tonumber(args[2])
  local rate = tonumber(args[3])
  local threads = tonumber(args[4])
  local run = args[5]
  headers = {
    ["Authorization"] = "Bearer " .. key,
    ["Content-Type"] = "application/json",
    ["User-Agent"] = "Mozilla/5.0 (Linux; Android 14; Pixel 8) bench",
  }
  if rate > 0 then
    interval_us = 1e6 * threads / rate
  end
  local event_time = os.time()
  for slot = 1, per_request do
    for _, piece in ipairs(event_pieces(run, slot, event_time)) do
      pieces[#pieces + 1] = piece or ""
      if not piece then
        counter_slots[#counter_slots + 1] = #pieces
      end
    end
  end
end

function request()
  counter = counter + 1
  local id = tostring(counter)
  for _, i in ipairs(counter_slots) do
    pieces[i] = id
  end
  local body = table.concat(pieces)
  if per_request > 1 then
    body = '{"events":[' .. body .. "]}"
  end
  return wrk.format("POST", nil, headers, body)
end

function delay()
  if interval_us == nil then
    return 0
  end
  local now = now_us()
  -- A slot missed by more than 100 ms is dropped rather than sent in a burst.
  if next_at == nil or next_at < now - 100000 then
    next_at = now
  end
  local wait = next_at - now
  next_at = next_at + interval_us
  if wait <= 1000 then
    return 0
  end
  return math.floor(wait / 1000)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"errors_connect":%d,"errors_read":%d,' ..
    '"errors_write":%d,"errors_status":%d,"errors_timeout":%d,"latency_p50_us":%d,"latency_p90_us":%d,' ..
    '"latency_p99_us":%d,"latency_max_us":%d,"latency_mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
