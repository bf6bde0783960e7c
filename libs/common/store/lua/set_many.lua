-- Several plain writes at once. KEYS: the keys. ARGV: per key, its value and its TTL in
-- milliseconds ('' for none). Returns the number of keys written.
for i, key in ipairs(KEYS) do
    local ttl = ARGV[2 * i]
    if ttl == '' then
        redis.call('SET', key, ARGV[2 * i - 1])
    else
        redis.call('SET', key, ARGV[2 * i - 1], 'PX', ttl)
    end
end
return #KEYS
