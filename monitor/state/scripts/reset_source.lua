-- A partition's stored offset no longer belongs to its log (monitor.sources): forget it, if it is
-- still the one checked, and queue the source_reset alert event, in one step.
-- KEYS: offsets, fingerprints, outbox, alert history. ARGV: offset field, the stored offset checked,
-- its fingerprint ("" = none), the event (JSON), history cap. Returns 1, or 0 when either moved.
-- Not cluster-safe: the alert history (<prefix>:alerts:history) is outside the model's hash tag
-- (issue 18, Redis Cluster, moves its write out of the script).
if (redis.call('HGET', KEYS[1], ARGV[1]) or '') ~= ARGV[2] then return 0 end
if (redis.call('HGET', KEYS[2], ARGV[1]) or '') ~= ARGV[3] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('RPUSH', KEYS[3], ARGV[4])
redis.call('LPUSH', KEYS[4], ARGV[4])
redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[5]) - 1)
return 1
