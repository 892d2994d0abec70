-- domain rules: ARGV = throttle count n, then n (domain, interval µs) pairs, then the
-- blacklisted domains. Replaces the spider's throttles and blacklist. Returns 1.
redis.call('DEL', K_TH, K_BL)
local n = tonumber(ARGV[1])
local last = 1 + 2 * n
for from = 2, last, 1000 do
  redis.call('HSET', K_TH, unpack(ARGV, from, math.min(from + 999, last)))
end
for from = last + 1, #ARGV, 1000 do
  redis.call('SADD', K_BL, unpack(ARGV, from, math.min(from + 999, #ARGV)))
end
return 1
