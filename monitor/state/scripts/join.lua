-- The join buffer's helpers, a prelude of apply_batch and apply_outcomes (the same arithmetic as
-- monitor.state.keys.join_period / join_value / join_month_bin). The loader puts the line
-- 'local JOIN_PERIOD, MONTH_ORIGIN = ...' before it. Pending outcomes are tracked per period in
-- <base>:pending:periods (period -> outcomes still waiting), so that the batch script probes only
-- the periods that hold some: none at all when no outcome came before its record.
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
-- The periods whose pending buckets hold outcomes and still live, newest first; forgets the others.
local function pending_periods(key, now, ttl)
  local raw, live = redis.call('HGETALL', key), {}
  for i = 1, #raw, 2 do
    local period = tonumber(raw[i])
    if tonumber(raw[i + 1]) <= 0 or join_deadline(period, ttl) <= now then
      redis.call('HDEL', key, raw[i])
    else
      live[#live + 1] = period
    end
  end
  table.sort(live, function(x, y) return x > y end)
  return live
end
