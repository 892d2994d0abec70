-- budget: a job's maxPages on a sharded frontier, kept on its first shard. Every shard admits
-- without a job-wide cap; the client takes budget here before it enqueues and gives back what
-- was not admitted, so the cap is never exceeded.
-- KEYS[1] = the first shard's base. ARGV = job field, op, n:
--   'set' n: the cap (-1: none) | 'take' n: takes up to n, returns how many (n without a cap)
--   | 'give' n: gives n back | 'del': forgets the job. Returns an integer.
local K = KEYS[1] .. ':budget'
local f, op, n = ARGV[1], ARGV[2], tonumber(ARGV[3] or '0')
local used = f .. '#n'
if op == 'set' then
  redis.call('HSET', K, f, ARGV[3])
  return 0
elseif op == 'del' then
  return redis.call('HDEL', K, f, used)
end
local cap = tonumber(redis.call('HGET', K, f) or '-1')
if cap < 0 then return op == 'take' and n or 0 end
if op == 'take' then
  local have = tonumber(redis.call('HGET', K, used) or '0')
  local got = math.max(0, math.min(n, cap - have))
  if got > 0 then redis.call('HINCRBY', K, used, got) end
  return got
end
local left = redis.call('HINCRBY', K, used, -n)
if left < 0 then redis.call('HSET', K, used, '0') end
return 0
