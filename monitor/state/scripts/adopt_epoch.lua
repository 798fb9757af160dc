-- After a state loss, the first worker of the new epoch to touch a model drops what was written
-- into it since the loss (partial, and replayed from the topic anyway) and adopts it.
-- KEYS: epoch copy, months, offsets, fingerprints, watermark, watermarks, metrics, then per month
-- stored: count, hist bad, hist good, hist unlabeled, features (every key it touches is declared).
-- ARGV: the epoch found, the new epoch, then the months the caller declared keys for.
-- Returns 1 (adopted), 0 (the epoch copy moved: nothing done), -1 (the stored months are not the
-- declared ones: a batch added one meanwhile; nothing done, the caller reads them again).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('SCARD', KEYS[2]) ~= #ARGV - 2 then return -1 end
for i = 3, #ARGV do
  if redis.call('SISMEMBER', KEYS[2], ARGV[i]) == 0 then return -1 end
end
for k = 8, #KEYS do redis.call('DEL', KEYS[k]) end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
redis.call('SET', KEYS[1], ARGV[2])
return 1
