-- KEYS[1]: the stream, KEYS[2]: its flag. ARGV[1]: the value, ARGV[2]: the most entries.
-- Adds the value at the end and sets the flag (no TTL); 0 and nothing written when full.
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[2]) then
    return 0
end
redis.call('XADD', KEYS[1], '*', 'v', ARGV[1])
redis.call('SET', KEYS[2], '1')
return 1
