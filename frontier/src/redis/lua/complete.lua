-- complete: ARGV = lease id, status ('' for none), bytes, items, step, child count, then
-- (domain, priority, fingerprint, record) per child.
-- Returns {'acked', admitted, duplicates, over budget, refused} | {'parked'} | {'gone'} | {'stale'}.
local now = now_us()
local id = ARGV[1]
local payload = redis.call('HGET', K_LEASES, id)
if not payload then return { 'stale' } end
redis.call('HDEL', K_LEASES, id)
redis.call('ZREM', K_DEADLINES, id)
local j = parse_payload(payload)
if not j then return { 'gone' } end
local c = job(j, now)
if c.state == 'gone' then return { 'gone' } end
if c.state == 'susp' then
  requeue_front(payload, now)
  flush_jobs()
  return { 'parked' }
end
bump(c, 'f', -1)
local status = ARGV[2]
if status == '' then
  bump(c, 'er', 1)
else
  bump(c, 'pg', 1)
  bump(c, 'c' .. status, 1)
end
bump(c, 'by', tonumber(ARGV[3]))
bump(c, 'it', tonumber(ARGV[4]))
local step = tonumber(ARGV[5])
if step > c.n.stp then set(c, 'stp', step) end
if status == '' then spider_count('error', now) else spider_count(status, now) end
local n = tonumber(ARGV[6])
local a, du, o, r = 0, 0, 0, 0
if c.state == 'run' then
  a, du, o = enqueue_all(j, c, 7, n)
else
  r = n
end
flush_jobs()
return { 'acked', n2s(a), n2s(du), n2s(o), n2s(r) }
