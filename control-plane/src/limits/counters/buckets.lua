-- Takes from ('check') or charges ('charge') every bucket in KEYS in one step, on Redis's
-- clock so that every replica agrees. The arithmetic is gcra.rs's: a bucket is a hash with
-- its backlog `l` at `t` (µs), in ticks of 1/`r` µs.
--
-- ARGV: mode, expiry margin (ms), then per bucket: window (µs), requests, burst, count.
-- A charge adds the node id, how long an Envoy stays counted (µs), the most Envoys counted
-- at once and how long its batch id is remembered (ms); its last two keys are the sorted set
-- of Envoys by when they last synced and its batch's key. A batch whose key exists was
-- charged before: it charges nothing and answers the buckets as they are.
-- Replies: check {admitted (0/1), backlog ms...};
-- charge {Envoys, counted (0/1), repeated (0/1), backlog ms...}.

local mode = ARGV[1]
local margin_ms = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local buckets = #KEYS
local repeated = 0
if mode == 'charge' then
  buckets = buckets - 2
  local batch_memory_ms = ARGV[2 + buckets * 4 + 4]
  if not redis.call('SET', KEYS[#KEYS], '1', 'NX', 'PX', batch_memory_ms) then
    repeated = 1
  end
end

local function number(value)
  return string.format('%.17g', value)
end

local function backlog(key, requests)
  local stored = redis.call('HMGET', key, 'l', 't', 'r')
  if not stored[1] then
    return 0
  end
  local level = tonumber(stored[1])
  local stored_requests = tonumber(stored[3])
  if stored_requests ~= requests then
    level = level * requests / stored_requests
  end
  return math.max(0, level - (now - tonumber(stored[2])) * requests)
end

local before, after, requests_of = {}, {}, {}
local admitted = 1
for i = 1, buckets do
  local at = 2 + (i - 1) * 4
  local window_us = tonumber(ARGV[at + 1])
  local requests = tonumber(ARGV[at + 2])
  local capacity = tonumber(ARGV[at + 3]) * window_us
  local cost = window_us * tonumber(ARGV[at + 4])
  requests_of[i] = requests
  before[i] = backlog(KEYS[i], requests)
  if mode == 'check' then
    after[i] = before[i] + cost
    if after[i] > capacity then
      admitted = 0
    end
  elseif repeated == 1 then
    after[i] = before[i]
  else
    after[i] = math.min(before[i] + cost, capacity + window_us * requests)
  end
end

if admitted == 0 then
  after = before
end
local reply = {admitted}
local header = 1
if mode == 'charge' then
  header = 3
end
for i = 1, buckets do
  local backlog_ms = math.ceil(after[i] / (requests_of[i] * 1000))
  if admitted == 1 and repeated == 0 then
    redis.call('HSET', KEYS[i], 'l', number(after[i]), 't', number(now), 'r', number(requests_of[i]))
    redis.call('PEXPIRE', KEYS[i], backlog_ms + margin_ms)
  end
  reply[i + header] = backlog_ms
end

if mode == 'charge' then
  local envoys = KEYS[#KEYS - 1]
  local at = 3 + buckets * 4
  local node = ARGV[at]
  local presence_us = tonumber(ARGV[at + 1])
  local max_envoys = tonumber(ARGV[at + 2])
  redis.call('ZREMRANGEBYSCORE', envoys, '-inf', number(now - presence_us))
  local counted = 0
  if redis.call('ZSCORE', envoys, node) or redis.call('ZCARD', envoys) < max_envoys then
    redis.call('ZADD', envoys, now, node)
    redis.call('PEXPIRE', envoys, math.ceil(presence_us / 1000))
    counted = 1
  end
  reply[1] = redis.call('ZCARD', envoys)
  reply[2] = counted
  reply[3] = repeated
end
return reply
