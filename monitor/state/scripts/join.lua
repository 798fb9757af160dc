-- The join buffer's helpers, a prelude of apply_batch and apply_outcomes (the same arithmetic as
-- monitor.state.keys.join_period / join_value / join_month_bin). The loader puts the line
-- 'local JOIN_PERIOD, MONTH_ORIGIN = ...' before it. Pending outcomes are tracked per period in
-- <base>:pending:periods (period -> outcomes still waiting), so that the batch script probes only
-- the periods that hold some: none at all when no outcome came before its record.
-- The scripts name no key: the caller declares the buckets of the period and of the pending periods
-- it believes current (its clock, its cache), and join_check tells it, before any write, when Redis's
-- clock or pending periods say otherwise (monitor.state.joins).
local function join_clock()
  local now = tonumber(redis.call('TIME')[1])
  return now, math.floor(now / JOIN_PERIOD)
end
-- A bucket written in a period expires then, however often it is written: a trickle cannot keep it.
local function join_deadline(period, ttl)
  return (period + 1) * JOIN_PERIOD + ttl
end
local function join_value(month, bin, bins)
  local index = tonumber(string.sub(month, 1, 4)) * 12 + tonumber(string.sub(month, 6, 7)) - 1 - MONTH_ORIGIN
  return string.format('%d', index * bins + tonumber(bin))
end
local function join_month_bin(value, bins)
  value = tonumber(value)
  local index = math.floor(value / bins)
  local bin = value - index * bins
  index = index + MONTH_ORIGIN
  return string.format('%04d-%02d', math.floor(index / 12), index % 12 + 1), bin
end
-- The periods whose pending buckets hold outcomes and still live, newest first, and the fields of
-- the others, read only: forget_periods drops those once the checks are passed.
local function pending_periods(key, now, ttl)
  local raw, live, dead = redis.call('HGETALL', key), {}, {}
  for i = 1, #raw, 2 do
    local period = tonumber(raw[i])
    if tonumber(raw[i + 1]) <= 0 or join_deadline(period, ttl) <= now then
      dead[#dead + 1] = raw[i]
    else
      live[#live + 1] = period
    end
  end
  table.sort(live, function(x, y) return x > y end)
  return live, dead
end
local function forget_periods(key, dead)
  if #dead > 0 then redis.call('HDEL', key, unpack(dead)) end
end
-- Positions of the words of a declared list ("a b c" -> {a = 0, b = 1, c = 2}) and their number.
local function positions(text)
  local at, n = {}, 0
  for word in string.gmatch(text, '%S+') do
    at[word] = n
    n = n + 1
  end
  return at, n
end
-- The checks of the join buffer's declared keys, read only (a script runs them before any write):
-- the period of Redis's clock must be the declared one, and every live pending period among the
-- declared ones. Returns the clock (now, period, live periods, dead ones, the declared periods'
-- positions), or nil and the reply that tells the caller what to declare: {-3, Redis's unix time, ''}
-- or {-4, the live periods, ''}.
local function join_check(declared_period, declared_pending, periods_key, ttl)
  local now, period = join_clock()
  if period ~= declared_period then return nil, {-3, now, ''} end
  local live, dead = pending_periods(periods_key, now, ttl)
  local at = positions(declared_pending)
  for _, p in ipairs(live) do
    if at[tostring(p)] == nil then return nil, {-4, table.concat(live, ' '), ''} end
  end
  return {now = now, period = period, live = live, dead = dead, at = at}
end
