-- The claims and set_many calls one client made in one turn of its event loop, run one after
-- the other in one script call. Each call is all or nothing on its own and has its own
-- answer: a call that fails (a key of another kind) answers its error, writes nothing, and
-- the calls after it go on. When the server refuses writes altogether (a replica: READONLY;
-- out of memory, too few replicas, a failing disk) the whole run fails with the server's
-- word instead, so the client sees it as such (a Sentinel-managed client then finds the new
-- primary) and may run it again: Redis refuses these only before a run's first write, so
-- nothing was written.
--
-- STEPS: the claim steps the store's owners bring, by name, each {check, commit} (the store
--   composes them in ahead of this text; see libs/common/store/scripts.py).
-- ARGV[1]: the calls, msgpack, each a list:
--   {'claim', step name, step key, step arguments (a list), bucket key, rate, burst, bucket
--    now, flag key, then the mark and each other write as: key, length, TTL ms}
--   {'set', then per write: key, length, TTL ms}
--   A TTL of 0 is none; a step name, bucket or flag key of '' is none.
-- ARGV[2]: the values of every call, call after call, end to end (binary-safe; each call's
--   lengths say where its values are).
-- ARGV[3]: the key that records when this server's memory began (see memory_began).
-- Keys travel in the call list rather than in KEYS: one run serves the keys of many users,
-- which only one Redis (or a primary that Sentinel names) can serve anyway, and declaring
-- them would cost the client an argument each.
-- Returns {answers (msgpack), value...}: per claim {'ok', the step's answer or false, ...},
--   {'known', n, ...} (the mark's key held the n-th value after the answers),
--   {'refused', the step's refusal, ...}, {'wait', seconds, ...}, each ending with the time
--   the server's memory began and whether the flag key exists; or {'err', message}. Per set
--   {'ok', count} or {'err', message}.
local calls = cmsgpack.unpack(ARGV[1])
local blob, at = ARGV[2], 1
local answers, held = {}, {}

-- When this server's memory began: the record holds the replication id of the server that
-- wrote it and the time. A server restarted (with or without its data) or promoted from
-- replica has another replication id, and one that lost its data has no record: either way
-- whatever was written before may be gone, and its memory begins now. Read once per run.
local began
local function memory_began()
    if began then
        return began
    end
    local info = redis.call('INFO', 'replication')
    local replid = string.match(info, 'master_replid:(%w+)') or '?'
    local record = redis.call('GET', ARGV[3])
    if record then
        local id, since = string.match(record, '^(%w+) (.+)$')
        if id == replid and tonumber(since) then
            began = tonumber(since)
            return began
        end
    end
    local t = redis.call('TIME')
    -- Through its text, so that this run and every later one read the very same number.
    local text = string.format('%.6f', tonumber(t[1]) + tonumber(t[2]) / 1000000)
    redis.call('SET', ARGV[3], replid .. ' ' .. text)
    began = tonumber(text)
    return began
end

-- The rate-limit buckets the claims of this run use, read once and written back once at the
-- end (or before anything else writes their key), if a claim took a token: the run is
-- atomic, so this is the state each claim would have read after the previous one wrote it.
local buckets = {}

local function flush(key)
    local b = buckets[key]
    buckets[key] = nil
    if b and b.taken then
        redis.call('HSET', key, 'tokens', string.format('%.17g', b.tokens),
            'ts', string.format('%.17g', b.ts))
        redis.call('PEXPIRE', key, math.ceil(b.burst / b.rate * 1000) + 1000)
    end
end

local function set(key, value, ttl)
    flush(key)
    if ttl == 0 then
        redis.call('SET', key, value)
    else
        redis.call('SET', key, value, 'PX', ttl)
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

local function known(value, since, flagged)
    held[#held + 1] = value
    return {'known', #held, since, flagged}
end

-- Everything is read before anything is written, so a key of another kind fails the call
-- with nothing changed. The first obstacle answers: the mark's key exists, then the step,
-- then the bucket.
local function claim(c, values)
    local name, bucket, flag, mark, mark_ttl = c[2], c[5], c[9], c[10], c[12]
    local since = memory_began()
    local flagged = flag ~= '' and redis.call('EXISTS', flag) == 1

    -- The owner's step: checked here, committed only when the whole claim goes through.
    local step, hold, refusal
    if name ~= '' then
        step = STEPS[name]
        if not step then
            error('no claim step named ' .. name)
        end
        local ok, x = step.check(c[3], c[4])
        if ok then
            hold = x
        else
            refusal = x
        end
    end

    -- The bucket's rule is rate_acquire.lua's.
    local b, wait
    if bucket ~= '' and refusal == nil then
        local rate, burst, now = c[6], c[7], c[8]
        b = buckets[bucket]
        if not b then
            local f = redis.call('HMGET', bucket, 'tokens', 'ts')
            local tokens, ts = tonumber(f[1]), tonumber(f[2])
            if tokens == nil or ts == nil then
                tokens, ts = burst, now
            end
            b = {tokens = tokens, ts = ts}
        end
        b.rate, b.burst = rate, burst
        if now > b.ts then
            b.tokens = math.min(burst, b.tokens + (now - b.ts) * rate)
            b.ts = now
        end
        buckets[bucket] = b
        if b.tokens < 1 then
            wait = (1 - b.tokens) / rate
        end
    end

    if refusal ~= nil or wait then
        local value = redis.call('GET', mark)
        if value then
            return known(value, since, flagged)
        end
        if refusal ~= nil then
            return {'refused', refusal, since, flagged}
        end
        return {'wait', wait, since, flagged}
    end

    -- The mark, unless its key exists: then its value answers and nothing is written (SET
    -- with both NX and GET: Redis 7.0 or later).
    flush(mark)
    local value
    if mark_ttl == 0 then
        value = redis.call('SET', mark, values[1], 'NX', 'GET')
    else
        value = redis.call('SET', mark, values[1], 'PX', mark_ttl, 'NX', 'GET')
    end
    if value then
        return known(value, since, flagged)
    end
    local answer = false
    if step then
        flush(c[3])
        answer = step.commit(c[3], hold)
    end
    if b then
        b.tokens, b.taken = b.tokens - 1, true
    end
    local v = 2
    for i = 13, #c, 3 do
        set(c[i], values[v], c[i + 2])
        v = v + 1
    end
    return {'ok', answer, since, flagged}
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
        ok, answer = pcall(claim, c, cut(c, 10))
    else
        ok, answer = pcall(set_many, c, cut(c, 2))
    end
    if ok then
        answers[n] = answer
    else
        local message = type(answer) == 'table' and answer.err or tostring(answer)
        local word = string.match(message, '^%u+')
        if word and word ~= 'WRONGTYPE' and word ~= 'ERR' then
            return redis.error_reply(message)
        end
        answers[n] = {'err', message}
    end
end
for key in pairs(buckets) do
    flush(key)
end

local reply = {cmsgpack.pack(answers)}
for _, value in ipairs(held) do
    reply[#reply + 1] = value
end
return reply
