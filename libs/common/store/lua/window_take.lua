-- Reserve one send slot from the valid grant (until > now, count > 0) that expires first.
-- KEYS[1]: the window hash. ARGV: now.
-- Returns {1, kind, remaining} or {0, reason, 0} with reason no_window | window_expired |
-- quota_exhausted.
local key = KEYS[1]
local now = tonumber(ARGV[1])
local kinds = {'message', 'enter'}

local best, best_until = nil, nil
local seen, in_time = false, false
for _, k in ipairs(kinds) do
    local f = redis.call('HMGET', key, k .. ':until', k .. ':count')
    local u = tonumber(f[1])
    if u then
        seen = true
        if u > now then
            in_time = true
            local c = tonumber(f[2]) or 0
            if c > 0 and (best == nil or u < best_until) then
                best, best_until = k, u
            end
        end
    end
end

if best then
    local left = redis.call('HINCRBY', key, best .. ':count', -1)
    return {1, best, left}
end
if not seen then
    return {0, 'no_window', 0}
end
if in_time then
    return {0, 'quota_exhausted', 0}
end
return {0, 'window_expired', 0}
