-- Correct our view after WeChat refused a send our view allowed.
-- KEYS[1]: the window hash. ARGV: reason, now.
-- quota_exhausted (45047): every grant's count to 0. window_expired (45015): every grant
-- still open ends now. A later user message still renews (its until is later than the one
-- issued); a redelivery of the same one does not.
local key = KEYS[1]
local reason, now_s = ARGV[1], ARGV[2]
local now = tonumber(now_s)
local changed = 0
for _, k in ipairs({'message', 'enter'}) do
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
