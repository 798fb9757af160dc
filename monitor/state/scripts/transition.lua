-- An alert's transition. KEYS: alert states hash, outbox list (both in the model's hash tag).
-- ARGV: field, expected stored state ("" = none), new state, event. Returns 1, or 0 when it moved.
-- The caller appends the event to the deployment's alert history (<prefix>:alerts:history, another
-- cluster slot) after a 1 (monitor.state.alerts.AlertOps.record_history).
local old = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if old ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('RPUSH', KEYS[2], ARGV[4])
return 1
