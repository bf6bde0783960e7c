-- The reply-window rules on Redis; window_rules.py holds the same rules for memory:// (one
-- contract test runs both). A chunk that returns the table W: each script is W.<name> called
-- with KEYS[1] and ARGV (strings), and W.check / W.commit are the sender's claim step
-- (arguments from msgpack: numbers stay numbers).
--
-- One hash per user. Fields per kind: <kind>:count (left), <kind>:granted (as granted),
-- <kind>:until (unix s, moved to "now" by close), <kind>:issued (the until as granted).
local KINDS = {'message', 'enter'}
local W = {}

-- The valid grant (until > now, count > 0) that expires first: kind, count. Else nil and
-- why: no_window (no grant recorded, or the key is gone), quota_exhausted (a grant still in
-- time but used up), else window_expired.
local function slot(key, now)
    local f = redis.call('HMGET', key, 'message:until', 'message:count', 'enter:until',
        'enter:count')
    local best, best_until, best_count = nil, nil, 0
    local seen, in_time = false, false
    for i, k in ipairs(KINDS) do
        local u = tonumber(f[2 * i - 1])
        if u then
            seen = true
            if u > now then
                in_time = true
                local n = math.floor(tonumber(f[2 * i]) or 0)
                if n > 0 and (best == nil or u < best_until) then
                    best, best_until, best_count = k, u, n
                end
            end
        end
    end
    if best then
        return best, best_count
    end
    return nil, (not seen and 'no_window') or (in_time and 'quota_exhausted')
        or 'window_expired'
end

-- Open or renew one grant. ARGV: kind, count, until, now, linger_s. Replaced only by one
-- that ends strictly later than the one issued, so a redelivered event never resets a count
-- already used, nor reopens a window WeChat closed. Returns 1 when stored, 0 when kept.
function W.grant(key, argv)
    local kind, count, until_s = argv[1], argv[2], argv[3]
    local now, linger = tonumber(argv[4]), tonumber(argv[5])
    local old = redis.call('HGET', key, kind .. ':issued')
    if old and tonumber(old) >= tonumber(until_s) then
        return 0
    end
    -- The caller's text is stored as given: Lua would print a float with fewer digits.
    redis.call('HSET', key, kind .. ':count', count, kind .. ':granted', count,
        kind .. ':until', until_s, kind .. ':issued', until_s)
    local latest = tonumber(until_s)
    for _, k in ipairs(KINDS) do
        local u = tonumber(redis.call('HGET', key, k .. ':until'))
        if u and u > latest then
            latest = u
        end
    end
    local ttl_ms = math.ceil((math.max(latest - now, 0) + linger) * 1000)
    redis.call('PEXPIRE', key, string.format('%d', ttl_ms))
    return 1
end

-- Reserve one slot. ARGV: now, spend ('0': answer the same, taking nothing; remaining is
-- then the count before a take). Returns {1, kind, remaining} or {0, reason, 0}.
function W.take(key, argv)
    local kind, count = slot(key, tonumber(argv[1]))
    if not kind then
        return {0, count, 0}
    end
    if argv[2] == '0' then
        return {1, kind, count}
    end
    return {1, kind, redis.call('HINCRBY', key, kind .. ':count', -1)}
end

-- Give back one slot of a grant, only while that grant is still valid and never above what
-- it was granted. ARGV: kind, now. Returns the count, or -1.
function W.release(key, argv)
    local kind, now = argv[1], tonumber(argv[2])
    local f = redis.call('HMGET', key, kind .. ':until', kind .. ':count', kind .. ':granted')
    local u, c, g = tonumber(f[1]), tonumber(f[2]), tonumber(f[3])
    if u == nil or u <= now or c == nil or g == nil or c >= g then
        return -1
    end
    return redis.call('HINCRBY', key, kind .. ':count', 1)
end

-- Correct our view after WeChat refused a send our view allowed. ARGV: reason, now.
-- quota_exhausted (45047): every grant's count to 0. window_expired (45015): every grant
-- still open ends now. A later user message still renews (its until is later than the one
-- issued); a redelivery of the same one does not.
function W.close(key, argv)
    local reason, now_s = argv[1], argv[2]
    local now = tonumber(now_s)
    local changed = 0
    for _, k in ipairs(KINDS) do
        local u = tonumber(redis.call('HGET', key, k .. ':until'))
        if u then
            if reason == 'quota_exhausted' then
                redis.call('HSET', key, k .. ':count', 0)
                changed = changed + 1
            elseif u > now then
                redis.call('HSET', key, k .. ':until', now_s)
                changed = changed + 1
            end
        end
    end
    return changed
end

-- The claim step: a slot as W.take gives it, checked with the rest of the claim. args: {now}.
function W.check(key, args)
    local kind, count = slot(key, args[1])
    if kind then
        return true, {kind, count}
    end
    return false, count
end

function W.commit(key, hold)
    local kind, count = hold[1], hold[2] - 1
    redis.call('HSET', key, kind .. ':count', count)
    return {kind, count}
end

return W
