-- Open or renew one grant of a user's reply window.
-- KEYS[1]: the window hash. ARGV: kind, count, until, now, linger_s.
-- Fields per kind: <kind>:count (left), <kind>:granted (as granted), <kind>:until (unix s,
-- moved to "now" by window_close), <kind>:issued (the until as granted).
-- The grant is replaced only by one that ends strictly later than the one issued, so a
-- redelivered event never resets a count already used, nor reopens a window WeChat closed.
-- Returns 1 when stored, 0 when kept.
local key = KEYS[1]
local kind, count, until_s = ARGV[1], ARGV[2], ARGV[3]
local now, linger = tonumber(ARGV[4]), tonumber(ARGV[5])

local old = redis.call('HGET', key, kind .. ':issued')
if old and tonumber(old) >= tonumber(until_s) then
    return 0
end
-- The caller's text is stored as given: Lua would print a float with fewer digits.
redis.call('HSET', key, kind .. ':count', count, kind .. ':granted', count,
    kind .. ':until', until_s, kind .. ':issued', until_s)

local latest = tonumber(until_s)
for _, k in ipairs({'message', 'enter'}) do
    local u = tonumber(redis.call('HGET', key, k .. ':until'))
    if u and u > latest then
        latest = u
    end
end
local ttl_ms = math.ceil((math.max(latest - now, 0) + linger) * 1000)
redis.call('PEXPIRE', key, string.format('%d', ttl_ms))
return 1
