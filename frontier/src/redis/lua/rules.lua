-- domain rules: ARGV = throttle count n, then n (domain, interval µs) pairs, then the
-- blacklisted domains. Replaces the spider's throttles and blacklist. Returns 1.
redis.call('DEL', K_TH, K_BL)
local n = tonumber(ARGV[1])
local last = 1 + 2 * n
call_chunked('HSET', K_TH, ARGV, 2, last)
call_chunked('SADD', K_BL, ARGV, last + 1, #ARGV)
return 1
