-- heartbeat: KEYS[1] = a sorted set of members scored by expiry (a spider's workers, or the
-- spiders with workers); ARGV = member, ttl_us. Prunes expired members; returns now.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], 'GT', string.format('%.0f', now + ttl), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now))
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', math.ceil(ttl / 1000) + 1000))
return string.format('%.0f', now)
