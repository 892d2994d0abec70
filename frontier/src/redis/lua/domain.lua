-- domain hint: ARGV = domain, 'cd' (crawl delay), 'ad' (adaptive delay; 0 clears it) or 'ra'
-- (retry after), micros, ttl seconds.
local now = now_us()
local d = ARGV[1]
local us = tonumber(ARGV[3])
if ARGV[2] == 'cd' then
  redis.call('SET', k_cd(d), n2s(us), 'EX', ARGV[4])
elseif ARGV[2] == 'ad' then
  if us > 0 then
    redis.call('SET', k_ad(d), n2s(us), 'EX', ARGV[4])
  else
    redis.call('DEL', k_ad(d))
  end
else
  local untl = now + us
  local cur = tonumber(redis.call('ZSCORE', K_WAIT, d) or '0') or 0
  if untl > cur then
    redis.call('ZREM', K_READY, d)
    redis.call('ZADD', K_WAIT, n2s(untl), d)
  end
end
return 1
