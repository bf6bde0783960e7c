-- Token bucket shared by every replica. KEYS[1]: the bucket hash. ARGV: rate, burst, now.
-- Returns "0" when a token was taken, else the seconds until one is available (not taken).
-- Callers' clocks differ a little: a "now" older than the bucket's never refills it.
local key = KEYS[1]
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local f = redis.call('HMGET', key, 'tokens', 'ts')
local tokens, ts = tonumber(f[1]), tonumber(f[2])
if tokens == nil or ts == nil then
    tokens, ts = burst, now
end
if now > ts then
    tokens = math.min(burst, tokens + (now - ts) * rate)
    ts = now
end
local wait = 0
if tokens >= 1 then
    tokens = tokens - 1
else
    wait = (1 - tokens) / rate
end
redis.call('HSET', key, 'tokens', string.format('%.17g', tokens), 'ts', string.format('%.17g', ts))
-- A bucket left alone refills completely; then forgetting it changes nothing.
redis.call('PEXPIRE', key, string.format('%d', math.ceil(burst / rate * 1000) + 1000))
return string.format('%.17g', wait)
