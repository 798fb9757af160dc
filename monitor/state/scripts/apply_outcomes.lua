-- Joins outcomes to their waiting records. Every key it touches is declared (it builds no key name).
-- KEYS: outcome counters, pending periods, then the join buffer's buckets (one per distinct bucket of
-- the outcomes, in the order of their bucket index) of each period from the declared one back to the
-- oldest that may still hold records (ceil(TTL / JOIN_PERIOD) + 1 periods, newest first), then the
-- same buckets' pending keys for each declared pending period in turn (the declared period among
-- them: new pending outcomes go there), then per declared month: count, hist bad, hist good, hist
-- unlabeled.
-- ARGV: the declared join period, TTL (s), histogram bytes, the number of distinct buckets b, the
-- declared pending periods ("p1 p2 ..."), the declared months ("YYYY-MM ..."), then (record_id,
-- target, bucket index 1..b) triples.
-- Returns {1, the live pending periods, joined, pending, duplicates, then per month changed: month,
-- n, bad, good after and n, bad, good added (n: 0)}; or, with nothing written: {-3, Redis's unix
-- time, ''} (the declared period is not Redis's), {-4, the live pending periods, ''} (one is not
-- declared), {-5, every month of the joined records (the keys of some are not declared), ''}.
local ttl, size, buckets = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local bins = size / 8
local clock, status = join_check(tonumber(ARGV[1]), ARGV[5], KEYS[2], ttl)
if not clock then return status end
local period = clock.period
if clock.at[tostring(period)] == nil then
  return redis.error_reply('apply_outcomes: the pending keys of the declared period are not declared')
end
-- A record waits in the bucket of the period it was written in; buckets older than the oldest
-- declared have expired. Probed newest first (late labels are mostly recent).
local span = math.ceil(ttl / JOIN_PERIOD) + 1
local pending_keys = 3 + span * buckets  -- KEYS[pending_keys + position * b + i - 1]
local month_at = positions(ARGV[6])
local month_keys = pending_keys + buckets * select(2, positions(ARGV[5]))
local function pending_index(p, bucket)  -- of a declared pending period's bucket in KEYS
  return pending_keys + clock.at[tostring(p)] * buckets + bucket - 1
end
-- First pass, read only: where each outcome's record waits (its join key's index and value), and whether
-- the keys of every month a record belongs to are declared.
local found, needed, asked, missing = {}, {}, {}, false
for a = 7, #ARGV, 3 do
  local rid, bucket = ARGV[a], tonumber(ARGV[a + 2])
  for d = 0, span - 1 do
    local join = 3 + d * buckets + bucket - 1
    local kept = redis.call('HGET', KEYS[join], rid)
    if kept then
      found[a] = {join, kept}
      if kept ~= 'j' then
        local month = join_month_bin(kept, bins)
        if not asked[month] then
          asked[month] = true
          needed[#needed + 1] = month
          missing = missing or month_at[month] == nil
        end
      end
      break
    end
  end
end
if missing then return {-5, table.concat(needed, ' '), ''} end
-- Checks done: from here on it writes (a script is not rolled back, so no return below).
forget_periods(KEYS[2], clock.dead)
local joined, pending, duplicates = 0, 0, 0
local moves = {}
local touched = {}  -- pending buckets written (this period's): one EXPIREAT each at the end
local done = {}     -- records joined by this call: a second outcome for one is a duplicate
for a = 7, #ARGV, 3 do
  local rid, target, bucket = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  local where = found[a]
  if not where then
    -- Its record has not come: the outcome waits, unless an outcome for it already does.
    local seen = false
    for _, p in ipairs(clock.live) do
      local at = pending_index(p, bucket)
      if redis.call('HEXISTS', KEYS[at], rid) == 1 then
        seen = true
        break
      end
    end
    local key = KEYS[pending_index(period, bucket)]
    if (not seen) and redis.call('HSETNX', key, rid, target) == 1 then
      touched[key] = true
      pending = pending + 1
    else
      duplicates = duplicates + 1
    end
  elseif where[2] == 'j' or done[rid] then
    duplicates = duplicates + 1
  else
    done[rid] = true
    local month, b = join_month_bin(where[2], bins)
    local label = (target == '1') and 'bad' or 'good'
    moves[month] = moves[month] or {bad = {}, good = {}, unlabeled = {}, n = {bad = 0, good = 0}}
    local m = moves[month]
    m.unlabeled[b] = (m.unlabeled[b] or 0) - 1
    m[label][b] = (m[label][b] or 0) + 1
    m.n[label] = m.n[label] + 1
    local join = where[1]
    redis.call('HSET', KEYS[join], rid, 'j')  -- the bucket keeps its expiry
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
  local first = month_keys + 4 * month_at[month]  -- count, then hist bad, good, unlabeled
  local count = KEYS[first]
  for h, label in ipairs({'bad', 'good', 'unlabeled'}) do add_bins(KEYS[first + h], m[label], size) end
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
local live = clock.live
if pending > 0 and live[1] ~= period then table.insert(live, 1, period) end
local result = {1, table.concat(live, ' '), joined, pending, duplicates}
for _, v in ipairs(changes) do result[#result + 1] = v end
return result
