-- seed: ARGV = job field, count, then (domain, priority, fingerprint, record) per seed.
-- Returns {'ok', admitted, duplicates, over budget, blacklisted} | {'refused'} | {'unknown'}.
local now = now_us()
local j = redis.call('HGET', K_JOBS, ARGV[1])
if not j then return { 'unknown' } end
local c = job(j, now)
if c.state == 'gone' then return { 'unknown' } end
if c.state ~= 'run' then return { 'refused' } end
local a, du, o, bl = enqueue_all(j, c, 3, tonumber(ARGV[2]))
if a > 0 then redis.call('HSET', k_job(j), 'sd', '1') end
flush_jobs()
return { 'ok', n2s(a), n2s(du), n2s(o), n2s(bl) }
