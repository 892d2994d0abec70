-- job stats: ARGV = job field. Returns the job hash as a flat list (empty when unknown).
local j = redis.call('HGET', K_JOBS, ARGV[1])
if not j then return {} end
local st = redis.call('HGET', k_job(j), 'st')
if not st or st == 'purge' then return {} end
return redis.call('HGETALL', k_job(j))
