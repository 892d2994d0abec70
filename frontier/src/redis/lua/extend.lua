-- extend: ARGV = duration_us, then leases (deadlines members). Moves the deadline of each
-- lease still held to now + duration; returns how many were held. XX: never revives a lease.
local now = now_us()
local deadline = n2s(now + tonumber(ARGV[1]))
local held = 0
for i = 2, #ARGV do
  if redis.call('ZSCORE', K_DEADLINES, ARGV[i]) then
    redis.call('ZADD', K_DEADLINES, 'XX', deadline, ARGV[i])
    held = held + 1
  end
end
return held
