-- complete: ARGV = lease (the deadlines member), status ('' for none), bytes, items, step, child count, then
-- (domain, priority, fingerprint, record) per child.
-- Returns {'acked', admitted, duplicates, over budget, refused, blacklisted} | {'parked'} | {'gone'}
-- | {'stale'}.
local now = now_us()
if redis.call('ZREM', K_DEADLINES, ARGV[1]) == 0 then return { 'stale' } end
local payload = lease_payload(ARGV[1]) or ''
local j = parse_payload(payload)
if not j then return { 'gone' } end
local status = ARGV[2]
local c = job(j, now, status ~= '' and ('c' .. status) or nil)
if c.state == 'gone' then return { 'gone' } end
if c.state == 'susp' then
  requeue_front(payload, now)
  flush_jobs()
  return { 'parked' }
end
bump(c, 'f', -1)
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
local a, du, o, r, bl = 0, 0, 0, 0, 0
if c.state == 'run' then
  a, du, o, bl = enqueue_all(j, c, 7, n)
else
  r = n
end
flush_jobs()
return { 'acked', n2s(a), n2s(du), n2s(o), n2s(r), n2s(bl) }
