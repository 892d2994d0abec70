-- release: ARGV = lease (the deadlines member). Returns 1 when the lease was held and its request went back.
local now = now_us()
if redis.call('ZREM', K_DEADLINES, ARGV[1]) == 0 then return 0 end
local payload = lease_payload(ARGV[1]) or ''
requeue_front(payload, now)
flush_jobs()
return 1
