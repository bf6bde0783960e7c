-- KEYS[1]: the stream, KEYS[2]: its flag. ARGV: entry ids to remove.
-- Returns how many entries remain; the flag goes with the last one.
if #ARGV > 0 and redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('XDEL', KEYS[1], unpack(ARGV))
end
local left = redis.call('XLEN', KEYS[1])
if left == 0 then
    redis.call('DEL', KEYS[1], KEYS[2])
end
return left
