-- The claims and set_many calls one client made in one turn of its event loop, run one after
-- the other in one script call. Each call is all or nothing on its own and has its own
-- answer: a call that fails (a key of another kind) answers its error, writes nothing, and
-- the calls after it go on (unless the server refuses every write: see `refused`).
--
-- ARGV[1]: the calls, msgpack, each a list:
--   {'claim', window key, window now, bucket key, rate, burst, bucket now, then the mark
--    and each other write as: key, length, TTL ms}
--   {'set', then per write: key, length, TTL ms}
--   A TTL of 0 is none; a window or bucket key of '' is none.
-- ARGV[2]: the values of every call, call after call, end to end (binary-safe; each call's
--   lengths say where its values are).
-- Keys travel in the call list rather than in KEYS: one run serves the keys of many users,
-- which only one Redis (or a primary that Sentinel names) can serve anyway, and declaring
-- them would cost the client an argument each.
-- Returns {answers (msgpack), value...}: per claim {'ok', kind or '', remaining},
--   {'known', n} (the mark's key held the n-th value after the answers), {'window', reason},
--   {'wait', seconds} or {'err', message}; per set {'ok', count} or {'err', message}.
local calls = cmsgpack.unpack(ARGV[1])
local blob, at = ARGV[2], 1
local answers, held = {}, {}
-- Set when the server refuses writes altogether (a replica: READONLY, out of memory, too
-- few replicas, a failing disk): the whole run fails with the server's word, so the client
-- sees it as such (a Sentinel-managed client then finds the new primary) and may run it
-- again. Redis refuses these only before a run's first write, so nothing was written.
local refused

local function run(...)
    local r = redis.pcall(...)
    if type(r) == 'table' and r.err then
        local word = string.match(r.err, '^%u+')
        if word ~= 'WRONGTYPE' and word ~= 'ERR' then
            refused = r.err
        end
        error(r.err, 0)
    end
    return r
end

local function set(key, value, ttl)
    if ttl == 0 then
        run('SET', key, value)
    else
        run('SET', key, value, 'PX', string.format('%d', ttl))
    end
end

-- The values of one call whose writes start at c[first] (key, length, TTL ms each).
local function cut(c, first)
    local values = {}
    for i = first + 1, #c, 3 do
        values[#values + 1] = string.sub(blob, at, at + c[i] - 1)
        at = at + c[i]
    end
    return values
end

-- Everything is read before anything is written, so a key of another kind fails the call
-- with nothing changed.
local function claim(c, values)
    local window, bucket, mark = c[2], c[4], c[8]

    local known = run('GET', mark)
    if known then
        held[#held + 1] = known
        return {'known', #held}
    end

    -- The window's rule is window_take.lua's.
    local best, best_until = nil, nil
    if window ~= '' then
        local now = c[3]
        local seen, in_time = false, false
        for _, k in ipairs({'message', 'enter'}) do
            local f = run('HMGET', window, k .. ':until', k .. ':count')
            local u = tonumber(f[1])
            if u then
                seen = true
                if u > now then
                    in_time = true
                    local n = tonumber(f[2]) or 0
                    if n > 0 and (best == nil or u < best_until) then
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
    if bucket ~= '' then
        rate, burst = c[5], c[6]
        local now = c[7]
        local f = run('HMGET', bucket, 'tokens', 'ts')
        tokens, ts = tonumber(f[1]), tonumber(f[2])
        if tokens == nil or ts == nil then
            tokens, ts = burst, now
        end
        if now > ts then
            tokens = math.min(burst, tokens + (now - ts) * rate)
            ts = now
        end
        if tokens < 1 then
            return {'wait', (1 - tokens) / rate}
        end
    end

    local left = 0
    if best then
        left = run('HINCRBY', window, best .. ':count', -1)
    end
    set(mark, values[1], c[10])
    if bucket ~= '' then
        run('HSET', bucket, 'tokens', string.format('%.17g', tokens - 1),
            'ts', string.format('%.17g', ts))
        run('PEXPIRE', bucket, string.format('%d', math.ceil(burst / rate * 1000) + 1000))
    end
    local v = 2
    for i = 11, #c, 3 do
        set(c[i], values[v], c[i + 2])
        v = v + 1
    end
    return {'ok', best or '', left}
end

local function set_many(c, values)
    local v = 1
    for i = 2, #c, 3 do
        set(c[i], values[v], c[i + 2])
        v = v + 1
    end
    return {'ok', v - 1}
end

for n, c in ipairs(calls) do
    local ok, answer
    if c[1] == 'claim' then
        ok, answer = pcall(claim, c, cut(c, 8))
    else
        ok, answer = pcall(set_many, c, cut(c, 2))
    end
    if refused then
        return redis.error_reply(refused)
    end
    if ok then
        answers[n] = answer
    else
        answers[n] = {'err', tostring(answer)}
    end
end

local reply = {cmsgpack.pack(answers)}
for _, value in ipairs(held) do
    reply[#reply + 1] = value
end
return reply
