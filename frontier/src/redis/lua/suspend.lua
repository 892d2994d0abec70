-- suspend / resume: ARGV = job field, 'susp' or 'run'. Returns 1, or 0 for an unknown job.
local j = redis.call('HGET', K_JOBS, ARGV[1])
if not j then return 0 end
local st = redis.call('HGET', k_job(j), 'st')
if not st or st == 'purge' then return 0 end
if ARGV[2] == 'susp' then
  if st ~= 'susp' then
    redis.call('HSET', k_job(j), 'st', 'susp')
    each_queue(j, detach)
  end
elseif st ~= 'run' then
  redis.call('HSET', k_job(j), 'st', 'run')
  redis.call('HDEL', k_job(j), 'xd')
  each_queue(j, attach)
end
return 1
