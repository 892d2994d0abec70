-- register: ARGV = job field, appid, crawlid, policy json, expires_us (0: never), max pages
-- (-1: none), domain max pages (-1: none), interval_us. Returns {job, generation} | {'purging'}.
-- An expired job registered again gets its queues attached by the client's resume walk
-- (suspend.lua), which the 'cur' field set here starts.
local f = ARGV[1]
local now = now_us()
local j = redis.call('HGET', K_JOBS, f)
local st = nil
if j then
  st = redis.call('HGET', k_job(j), 'st')
  if st == 'purge' then return { 'purging' } end
  if not st then j = nil end
end
if not j then
  j = n2s(redis.call('INCR', K_JOBNO))
  redis.call('HSET', K_JOBS, f, j)
  redis.call('HSET', k_job(j), 'st', 'run', 'app', ARGV[2], 'crawl', ARGV[3], 'created', n2s(now))
  st = 'run'
end
local gen = redis.call('HINCRBY', k_job(j), 'gen', 1)
redis.call('HSET', k_job(j), 'pol', ARGV[4], 'exp', ARGV[5], 'mp', ARGV[6], 'dmp', ARGV[7], 'iv', ARGV[8])
local exp = tonumber(ARGV[5])
if st == 'run' and (exp == 0 or exp > now) and redis.call('HDEL', k_job(j), 'xd') == 1 then
  redis.call('HSET', k_job(j), 'cur', '0')
end
return { j, n2s(gen) }
