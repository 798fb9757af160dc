-- Applies one batch of one (model, version) and moves its offsets, atomically. The offsets
-- make the update idempotent: a batch whose offsets were already applied changes nothing,
-- and a worker whose view of the offsets is stale (another worker moved them) is told so.
-- The model's copy of the state epoch guards against writing into a state from another
-- lifetime (see state_epoch). Every key it touches is declared (it builds no key name).
-- KEYS: offsets, months, watermark, epoch copy, watermarks, pending periods, outcome counters,
-- fingerprints, then the join buffer's buckets of the declared period (one per distinct bucket of
-- the waiting records, in the order of their bucket index), then the same buckets' pending keys
-- for each declared pending period in turn, then per month: count, hist bad, hist good, hist
-- unlabeled, feature counts.
-- ARGV: k, latest ref_date of the batch, epoch, the declared join period, join TTL (s), histogram
-- bytes, max unseen category names per feature and month, the number of distinct buckets b, the
-- declared pending periods ("p1 p2 ..."), then k x (offset field, expected stored offset or "", new
-- offset, the partition's latest ref_date), then k fingerprints of the messages at the new offsets
-- ("" = unknown: the stored one is dropped), then per month: month, the (bin, count) pairs of bad,
-- good and unlabeled (three strings "bin count bin count ...": one argument each instead of two per
-- bin, which redis-py would encode one by one), n waiting, then (record_id, bin, bucket index 1..b)
-- of the unlabelled records that wait for their outcome, then n feature fields of the profile's
-- buckets and (field, count) pairs, then n fields of unseen category names and (field, count) pairs.
-- Returns {1, the live pending periods ("" when the join buffer was not used), first (1 for the
-- model's first records, or its first since a wipe)} then per month:
-- month, n, bad, good after the batch and n, bad, good it added; or, with nothing written:
-- {-1, offset field, stored offset}, {-2, 'epoch', stored epoch}, {-3, Redis's unix time, ''} (the
-- declared period is not Redis's), {-4, the live pending periods, ''} (one is not declared).
local copy = redis.call('GET', KEYS[4])
if copy and copy ~= ARGV[3] then
  return {-2, 'epoch', copy}
end
local k = tonumber(ARGV[1])
for i = 0, k - 1 do
  local stored = redis.call('HGET', KEYS[1], ARGV[10 + 4*i])
  local expected = ARGV[11 + 4*i]
  if (stored or '') ~= expected then
    return {-1, ARGV[10 + 4*i], stored or ''}
  end
end
local ttl, size, max_unseen = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local buckets = tonumber(ARGV[8])
local join_keys = 9                        -- KEYS[join_keys + i - 1]: bucket i of the period
local pending_keys = join_keys + buckets   -- then b keys per declared pending period
local clock  -- nil: the batch has no record for the join buffer
if ttl > 0 and buckets > 0 then
  local status
  clock, status = join_check(tonumber(ARGV[4]), ARGV[9], KEYS[6], ttl)
  if not clock then return status end
end
-- Checks done: from here on it writes (a script is not rolled back, so no return below).
if not copy then redis.call('SET', KEYS[4], ARGV[3]) end
if clock then forget_periods(KEYS[6], clock.dead) end
-- Per partition: its latest ref_date and when it last delivered (Redis clock), for the
-- event-time watermark that closes months (monitor.months.event_time_watermark).
local now = redis.call('TIME')[1]
local first = redis.call('HSETNX', KEYS[5], '~first', now)  -- when the model's first records came (1: now)
for i = 0, k - 1 do
  local partition = ARGV[10 + 4*i]
  redis.call('HSET', KEYS[1], partition, ARGV[12 + 4*i])
  local latest = ARGV[13 + 4*i]
  local seen = redis.call('HGET', KEYS[5], partition)
  if seen and string.sub(seen, 1, 10) > latest then latest = string.sub(seen, 1, 10) end
  redis.call('HSET', KEYS[5], partition, latest .. '|' .. now)
  local print = ARGV[10 + 4*k + i]
  if print == '' then redis.call('HDEL', KEYS[8], partition) else redis.call('HSET', KEYS[8], partition, print) end
end
local watermark = redis.call('GET', KEYS[3])
if (not watermark) or ARGV[2] > watermark then redis.call('SET', KEYS[3], ARGV[2]) end
local a = 10 + 5*k
local _, declared_pending = positions(ARGV[9])
local key = pending_keys + buckets * declared_pending  -- the first month's keys
local pending_joined = 0
local touched = {}  -- join buffer keys written (this period's): one EXPIREAT each at the end
local bins = size / 8
local result = {1, clock and table.concat(clock.live, ' ') or '', first}
while a <= #ARGV do
  local month = ARGV[a]
  local inc, totals = {{}, {}, {}}, {0, 0, 0}
  for h = 1, 3 do
    for b, c in string.gmatch(ARGV[a + h], '(%d+) (%d+)') do
      c = tonumber(c)
      inc[h][b] = (inc[h][b] or 0) + c
      totals[h] = totals[h] + c
    end
  end
  local waiting = tonumber(ARGV[a+4])
  a = a + 5
  -- Unlabelled records one by one: an outcome may have arrived first (pending), else the
  -- record's month and bin are kept in this period's join bucket for the outcome to come ('j' once
  -- joined). Pending buckets are probed only in the periods that hold outcomes.
  for j = 1, waiting do
    local rid, b, bucket = ARGV[a], ARGV[a+1], tonumber(ARGV[a+2])
    a = a + 3
    local h = 3
    if clock then
      local join = KEYS[join_keys + bucket - 1]
      local pending
      for _, period in ipairs(clock.live) do
        local position = clock.at[tostring(period)]  -- among the declared pending periods
        local pending_key = KEYS[pending_keys + position * buckets + bucket - 1]
        pending = redis.call('HGET', pending_key, rid)
        if pending then
          redis.call('HDEL', pending_key, rid)
          if redis.call('HINCRBY', KEYS[6], period, -1) <= 0 then
            redis.call('HDEL', KEYS[6], period)
          end
          break
        end
      end
      if pending then
        h = (pending == '1') and 1 or 2
        redis.call('HSET', join, rid, 'j')
        pending_joined = pending_joined + 1
      else
        redis.call('HSET', join, rid, join_value(month, b, bins))
      end
      touched[join] = true
    end
    inc[h][b] = (inc[h][b] or 0) + 1
    totals[h] = totals[h] + 1
  end
  redis.call('SADD', KEYS[2], month)
  local count = KEYS[key]
  local added = totals[1] + totals[2] + totals[3]
  local n = redis.call('HINCRBY', count, 'n', added)
  local bad = redis.call('HINCRBY', count, 'bad', totals[1])
  local good = redis.call('HINCRBY', count, 'good', totals[2])
  if totals[3] > 0 then redis.call('HINCRBY', count, 'unlabeled', totals[3]) end
  redis.call('HINCRBY', count, 'rev', 1)
  for h = 1, 3 do add_bins(KEYS[key + h], inc[h], size) end
  for _, v in ipairs({month, n, bad, good, added, totals[1], totals[2]}) do result[#result + 1] = v end
  local features = tonumber(ARGV[a])
  a = a + 1
  for j = 1, features do
    redis.call('HINCRBY', KEYS[key + 4], ARGV[a], ARGV[a + 1])
    a = a + 2
  end
  -- Unseen category names: a name already in the hash adds to it; a new one takes one of the
  -- feature's max_unseen places (counted in '<feature>|~unseen') or else counts in the overflow
  -- bucket '<feature>|__other__', which the drift counts as unseen too (the field names are
  -- monitor.stats.features.UNSEEN_NAMES_PART and OTHER).
  local unseen = tonumber(ARGV[a])
  a = a + 1
  for j = 1, unseen do
    local name, c = ARGV[a], ARGV[a + 1]
    local hash = KEYS[key + 4]
    a = a + 2
    if redis.call('HEXISTS', hash, name) == 1 then
      redis.call('HINCRBY', hash, name, c)
    else
      local feature = string.sub(name, 1, string.find(name, '|', 1, true) - 1)
      local places = feature .. '|~unseen'
      if tonumber(redis.call('HGET', hash, places) or '0') < max_unseen then
        redis.call('HINCRBY', hash, places, 1)
        redis.call('HINCRBY', hash, name, c)
      else
        redis.call('HINCRBY', hash, feature .. '|__other__', c)
      end
    end
  end
  key = key + 5
end
for join in pairs(touched) do redis.call('EXPIREAT', join, join_deadline(clock.period, ttl)) end
if pending_joined > 0 then redis.call('HINCRBY', KEYS[7], 'pending_joined', pending_joined) end
return result
