-- cutoff: ARGV = job field, domain, reason. Records that the job no longer crawls the domain
-- (a crawler trap, found by a worker): its queued requests are dropped when they come up and
-- its links are refused, both counted as blacklisted (see lease.lua, enqueue_all).
-- Returns 1, 0 when the domain was already cut off (the first reason stays), -1 when the job
-- is not registered.
local now = now_us()
local j = redis.call('HGET', K_JOBS, ARGV[1])
if not j then return -1 end
local c = job(j, now)
if c.state == 'gone' then return -1 end
if redis.call('HSETNX', k_job(j), 't:' .. ARGV[2], ARGV[3]) == 0 then return 0 end
bump(c, 'nt', 1)
flush_jobs()
return 1
