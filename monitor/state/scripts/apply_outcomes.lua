-- Joins outcomes to their waiting records. KEYS: outcome counters, pending periods. ARGV: key base,
-- TTL (s), histogram bytes, then (record_id, target, join bucket) triples. Returns joined, pending,
-- duplicates, then per month changed: month, n, bad, good after and n, bad, good added (n: 0).
-- Keys built in the script (from key_base(KEYS[1]), inside the model's hash tag): the join buffer's
-- buckets (their period is Redis TIME's) and the count / hist keys of the months the joined records
-- belong to (known only once a record is found).
local base = key_base(KEYS[1])  -- ARGV[1], the key base the caller passes, is not used: see key_base
local ttl, size = tonumber(ARGV[2]), tonumber(ARGV[3])
local bins = size / 8
local joined, pending, duplicates = 0, 0, 0
local moves = {}
local touched = {}  -- pending buckets written (this period's): one EXPIREAT each at the end
local now, period = join_clock()
-- A record waits in the bucket of the period it was written in; buckets older than this one
-- have expired. Probed newest first (late labels are mostly recent): at most ceil(ttl/period)+1.
local oldest = period - math.ceil(ttl / JOIN_PERIOD)
local waiting = pending_periods(KEYS[2], now, ttl)
for a = 4, #ARGV, 3 do
  local rid, target, bucket = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local join, kept
  for p = period, oldest, -1 do
    join = base .. ':join:' .. p .. ':' .. bucket
    kept = redis.call('HGET', join, rid)
    if kept then break end
  end
  if not kept then
    -- Its record has not come: the outcome waits, unless an outcome for it already does.
    local seen = false
    for _, p in ipairs(waiting) do
      if redis.call('HEXISTS', base .. ':pending:' .. p .. ':' .. bucket, rid) == 1 then
        seen = true
        break
      end
    end
    local pending_key = base .. ':pending:' .. period .. ':' .. bucket
    if (not seen) and redis.call('HSETNX', pending_key, rid, target) == 1 then
      touched[pending_key] = true
      pending = pending + 1
    else
      duplicates = duplicates + 1
    end
  elseif kept == 'j' then
    duplicates = duplicates + 1
  else
    local month, b = join_month_bin(kept, bins)
    local label = (target == '1') and 'bad' or 'good'
    moves[month] = moves[month] or {bad = {}, good = {}, unlabeled = {}, n = {bad = 0, good = 0}}
    local m = moves[month]
    m.unlabeled[b] = (m.unlabeled[b] or 0) - 1
    m[label][b] = (m[label][b] or 0) + 1
    m.n[label] = m.n[label] + 1
    redis.call('HSET', join, rid, 'j')  -- the bucket keeps its expiry
    joined = joined + 1
  end
end
if pending > 0 then
  local deadline = join_deadline(period, ttl)
  for key in pairs(touched) do redis.call('EXPIREAT', key, deadline) end
  redis.call('HINCRBY', KEYS[2], period, pending)
  redis.call('EXPIREAT', KEYS[2], deadline)
end
local changes = {}
for month, m in pairs(moves) do
  local count = base .. ':count:' .. month
  for _, label in ipairs({'bad', 'good', 'unlabeled'}) do
    add_bins(base .. ':hist:' .. month .. ':' .. label, m[label], size)
  end
  redis.call('HINCRBY', count, 'unlabeled', -(m.n.bad + m.n.good))
  local bad = redis.call('HINCRBY', count, 'bad', m.n.bad)
  local good = redis.call('HINCRBY', count, 'good', m.n.good)
  redis.call('HINCRBY', count, 'rev', 1)
  local n = tonumber(redis.call('HGET', count, 'n') or 0)
  for _, v in ipairs({month, n, bad, good, 0, m.n.bad, m.n.good}) do changes[#changes + 1] = v end
end
local counters = KEYS[1]
if joined > 0 then redis.call('HINCRBY', counters, 'joined', joined) end
if pending > 0 then redis.call('HINCRBY', counters, 'pending', pending) end
if duplicates > 0 then redis.call('HINCRBY', counters, 'duplicates', duplicates) end
local result = {joined, pending, duplicates}
for _, v in ipairs(changes) do result[#result + 1] = v end
return result
