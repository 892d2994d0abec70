-- release: ARGV = lease id. Returns 1 when the lease was held and its request went back.
local now = now_us()
local id = ARGV[1]
local payload = redis.call('HGET', K_LEASES, id)
if not payload then return 0 end
redis.call('HDEL', K_LEASES, id)
redis.call('ZREM', K_DEADLINES, id)
requeue_front(payload, now)
flush_jobs()
return 1
