-- purge: ARGV = job field, work budget. Deletes up to `budget` queues and dedupe buckets of the
-- job per call. Returns 'done', 'more' (call again) or 'none' (not registered).
local f = ARGV[1]
local budget = tonumber(ARGV[2])
local j = redis.call('HGET', K_JOBS, f)
if not j then return 'none' end
local jk = k_job(j)
if redis.call('HGET', jk, 'st') ~= 'purge' then
  local v = redis.call('HMGET', jk, 'dl', 'ds')
  local buckets = 2 ^ (tonumber(v[1]) or 0) + (tonumber(v[2]) or 0)
  redis.call('HSET', jk, 'st', 'purge', 'pb', n2s(buckets))
end
while budget > 0 do
  local ms = redis.call('SPOP', k_jq(j), math.min(budget, 100))
  if #ms == 0 then break end
  for _, m in ipairs(ms) do
    local p, d = string.match(m, '^(-?%d+):(.*)$')
    if p then
      redis.call('UNLINK', k_q(j, p, d))
      redis.call('ZREM', k_dq(d), j .. ':' .. p)
      refresh_domain(d)
    end
    budget = budget - 1
  end
end
if budget > 0 then
  local left = tonumber(redis.call('HGET', jk, 'pb')) or 0
  while left > 0 and budget > 0 do
    left = left - 1
    budget = budget - 1
    redis.call('UNLINK', k_seen(j, n2s(left)))
  end
  redis.call('HSET', jk, 'pb', n2s(left))
  if left == 0 and redis.call('SCARD', k_jq(j)) == 0 then
    redis.call('UNLINK', k_jd(j), k_jq(j), jk)
    redis.call('HDEL', K_JOBS, f)
    return 'done'
  end
end
return 'more'
