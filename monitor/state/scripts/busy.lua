-- Fault injection only (monitor.ops.faults): keeps Redis busy ARGV[1] seconds, as a long script would.
local stop = tonumber(redis.call('TIME')[1]) + tonumber(ARGV[1])
while tonumber(redis.call('TIME')[1]) < stop do end
return 1
