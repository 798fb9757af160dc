-- An alert's transition. KEYS: alert states hash, history list, outbox list.
-- ARGV: field, expected stored state ("" = none), new state, event, history cap.
-- Not cluster-safe: the alert history (<prefix>:alerts:history) is outside the model's hash tag
-- (issue 18, Redis Cluster, moves its write out of the script).
local old = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if old ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('LPUSH', KEYS[2], ARGV[4])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[5]) - 1)
redis.call('RPUSH', KEYS[3], ARGV[4])
return 1
