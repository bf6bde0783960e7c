-- All or nothing: a mark written unless present, a reply-window slot, a rate-limit token,
-- and plain writes after them. Everything is read before anything is written, so a key of
-- another kind fails the call with nothing changed.
-- KEYS: the mark, then the window (when asked), the bucket (when asked), the other writes.
-- ARGV: mark value, mark TTL ms ('' for none), window now ('' for no window), rate ('' for
-- no bucket), burst, bucket now, then per other write its value and TTL ms ('' for none).
-- Returns {'ok', kind or '', remaining}, {'known', value}, {'window', reason} or
-- {'wait', seconds}.
local mark_value, mark_ttl, window_now, rate_s = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local mark = KEYS[1]
local next_key = 2
local window, bucket
if window_now ~= '' then
    window = KEYS[next_key]
    next_key = next_key + 1
end
if rate_s ~= '' then
    bucket = KEYS[next_key]
    next_key = next_key + 1
end

local known = redis.call('GET', mark)
if known then
    return {'known', known}
end

-- The window's rule is window_take.lua's.
local best, best_until = nil, nil
if window then
    local now = tonumber(window_now)
    local seen, in_time = false, false
    for _, k in ipairs({'message', 'enter'}) do
        local f = redis.call('HMGET', window, k .. ':until', k .. ':count')
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
    if not best then
        if not seen then
            return {'window', 'no_window'}
        end
        if in_time then
            return {'window', 'quota_exhausted'}
        end
        return {'window', 'window_expired'}
    end
end

-- The bucket's rule is rate_acquire.lua's.
local rate, burst, tokens, ts
if bucket then
    rate, burst = tonumber(rate_s), tonumber(ARGV[5])
    local now = tonumber(ARGV[6])
    local f = redis.call('HMGET', bucket, 'tokens', 'ts')
    tokens, ts = tonumber(f[1]), tonumber(f[2])
    if tokens == nil or ts == nil then
        tokens, ts = burst, now
    end
    if now > ts then
        tokens = math.min(burst, tokens + (now - ts) * rate)
        ts = now
    end
    if tokens < 1 then
        return {'wait', string.format('%.17g', (1 - tokens) / rate)}
    end
end

if mark_ttl == '' then
    redis.call('SET', mark, mark_value)
else
    redis.call('SET', mark, mark_value, 'PX', mark_ttl)
end
local left = 0
if best then
    left = redis.call('HINCRBY', window, best .. ':count', -1)
end
if bucket then
    redis.call('HSET', bucket, 'tokens', string.format('%.17g', tokens - 1),
        'ts', string.format('%.17g', ts))
    redis.call('PEXPIRE', bucket, string.format('%d', math.ceil(burst / rate * 1000) + 1000))
end
local arg = 7
for i = next_key, #KEYS do
    if ARGV[arg + 1] == '' then
        redis.call('SET', KEYS[i], ARGV[arg])
    else
        redis.call('SET', KEYS[i], ARGV[arg], 'PX', ARGV[arg + 1])
    end
    arg = arg + 2
end
return {'ok', best or '', left}
