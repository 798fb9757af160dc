-- After a state loss, the first worker of the new epoch to touch a model drops what was written
-- into it since the loss (partial, and replayed from the topic anyway) and adopts it.
-- KEYS: epoch copy, months, offsets, fingerprints, watermark, watermarks, metrics. ARGV: the epoch
-- found, the new epoch, the model's key base (unused). Keys built in the script (from key_base(KEYS[1]), inside the model's
-- hash tag): the per-month count / hist / features keys (the months are read by the script).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local base = key_base(KEYS[1])  -- ARGV[3], the caller's key base, is not used: see key_base
for _, m in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  redis.call('DEL', base .. ':count:' .. m, base .. ':hist:' .. m .. ':bad', base .. ':hist:' .. m .. ':good',
             base .. ':hist:' .. m .. ':unlabeled', base .. ':features:' .. m)
end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
redis.call('SET', KEYS[1], ARGV[2])
return 1
