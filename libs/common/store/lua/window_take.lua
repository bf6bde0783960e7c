-- Reserve one send slot from the valid grant (until > now, count > 0) that expires first.
-- KEYS[1]: the window hash. ARGV: now[, spend]; spend '0' answers the same, taking nothing
-- (remaining is then the count before a take).
-- Returns {1, kind, remaining} or {0, reason, 0} with reason no_window | window_expired |
-- quota_exhausted.
local key = KEYS[1]
local now = tonumber(ARGV[1])
local spend = ARGV[2] ~= '0'
local kinds = {'message', 'enter'}

local best, best_until, best_count = nil, nil, 0
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
                best, best_until, best_count = k, u, c
            end
        end
    end
end

if best then
    if not spend then
        return {1, best, best_count}
    end
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
