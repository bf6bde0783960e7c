-- Give back one slot of a grant, only while that grant is still valid and never above what
-- it was granted. KEYS[1]: the window hash. ARGV: kind, now. Returns the count, or -1.
local key = KEYS[1]
local kind, now = ARGV[1], tonumber(ARGV[2])
local f = redis.call('HMGET', key, kind .. ':until', kind .. ':count', kind .. ':granted')
local u, c, g = tonumber(f[1]), tonumber(f[2]), tonumber(f[3])
if u == nil or u <= now or c == nil or g == nil or c >= g then
    return -1
end
return redis.call('HINCRBY', key, kind .. ':count', 1)
