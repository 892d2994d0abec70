-- domain hint: ARGV = domain, 'cd' (crawl delay) or 'ra' (retry after), micros, ttl seconds.
local now = now_us()
local d = ARGV[1]
local us = tonumber(ARGV[3])
if ARGV[2] == 'cd' then
  redis.call('SET', k_cd(d), n2s(us), 'EX', ARGV[4])
else
  local untl = now + us
  local cur = tonumber(redis.call('ZSCORE', K_WAIT, d) or '0') or 0
  if untl > cur then
    redis.call('ZREM', K_READY, d)
    redis.call('ZADD', K_WAIT, n2s(untl), d)
  end
end
return 1
