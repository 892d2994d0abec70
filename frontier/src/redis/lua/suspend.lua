-- suspend / resume: ARGV = job field, 'susp' or 'run', chunk. Flips the job's state (at once,
-- atomically), then detaches (suspend) or attaches (resume) up to `chunk` of its queues per
-- call, walking the job's queue set with a cursor kept in the job ('cur'), so that a job with
-- a million queues never stalls Redis in one script. Returns 'done', 'more' (call again) or
-- 'none' (unknown job). A queue not yet detached is detached lazily by the next lease (the
-- job's state is checked there); one not yet attached waits for the next call, which the
-- client makes until 'done' (and the operator repeats while the job shows as settling).
local j = redis.call('HGET', K_JOBS, ARGV[1])
if not j then return 'none' end
local jk = k_job(j)
local st = redis.call('HGET', jk, 'st')
if not st or st == 'purge' then return 'none' end
local want = ARGV[2]
local cur = redis.call('HGET', jk, 'cur')
if st ~= want then
  redis.call('HSET', jk, 'st', want)
  if want == 'run' then redis.call('HDEL', jk, 'xd') end
  cur = '0'
elseif not cur then
  return 'done'
end
local r = redis.call('SSCAN', k_jq(j), cur, 'COUNT', tonumber(ARGV[3]))
local fn = attach
if want == 'susp' then fn = detach end
for _, m in ipairs(r[2]) do
  local p, d = string.match(m, '^(-?%d+):(.*)$')
  if p then fn(j, p, d) end
end
if r[1] == '0' then
  redis.call('HDEL', jk, 'cur')
  return 'done'
end
redis.call('HSET', jk, 'cur', r[1])
return 'more'
