-- A partition's stored offset no longer belongs to its log (monitor.worker.sources): forget it, if it is
-- still the one checked, and queue the source_reset alert event, in one step.
-- KEYS: offsets, fingerprints, outbox (the model's hash tag). ARGV: offset field, the stored offset
-- checked, its fingerprint ("" = none), the event (JSON). Returns 1, or 0 when either moved.
-- The caller appends the event to the alert history (another cluster slot) after a 1.
if (redis.call('HGET', KEYS[1], ARGV[1]) or '') ~= ARGV[2] then return 0 end
if (redis.call('HGET', KEYS[2], ARGV[1]) or '') ~= ARGV[3] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('RPUSH', KEYS[3], ARGV[4])
return 1
