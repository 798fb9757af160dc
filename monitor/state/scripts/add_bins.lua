-- add_bins(hist, inc, size): add counts to a dense int64 histogram string, one BITFIELD call per
-- chunk of bins (fewer calls than bins, under Lua's unpack limit). A prelude of apply_batch and
-- apply_outcomes.
local function add_bins(hist, inc, size)
  if next(inc) == nil then return end
  -- Created at full length: BITFIELD would grow it bin by bin, with Redis's greedy
  -- preallocation, up to twice the size.
  if redis.call('EXISTS', hist) == 0 then redis.call('SETRANGE', hist, size - 1, '\0') end
  local ops, n = {}, 0
  for b, c in pairs(inc) do
    ops[n + 1], ops[n + 2], ops[n + 3], ops[n + 4] = 'INCRBY', 'i64', '#' .. b, c
    n = n + 4
    if n >= 4000 then
      redis.call('BITFIELD', hist, unpack(ops, 1, n))
      ops, n = {}, 0
    end
  end
  if n > 0 then redis.call('BITFIELD', hist, unpack(ops, 1, n)) end
end
