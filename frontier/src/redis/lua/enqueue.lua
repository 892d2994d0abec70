-- enqueue: admits requests of one job or several: seeds, or the children of leases that live on
-- this shard (a sharded frontier enqueues a page's children on their own hosts' shards).
-- ARGV = seeds flag ('1': the requests are seeds), group count, then per group: job field,
-- request count, then (domain, priority, fingerprint, record) per request.
-- Returns five strings per group, in order: 'ok', admitted, duplicates, over budget,
-- blacklisted | 'refused' (the job accepts nothing) | 'unknown' (then four '0').
-- Groups of one job (a batch's leases are mostly of one job) look the job up once, and the
-- sequence numbers of every request are reserved at once.
local now = now_us()
local seeds = ARGV[1] == '1'
local groups = tonumber(ARGV[2])
local total, at = 0, 3
for _ = 1, groups do
  local n = tonumber(ARGV[at + 1])
  total = total + n
  at = at + 2 + 4 * n
end
local seq = total > 0 and redis.call('INCRBY', K_SEQ, total) - total or 0
local numbers = {}
local out = {}
at = 3
for _ = 1, groups do
  local field, n = ARGV[at], tonumber(ARGV[at + 1])
  local j = numbers[field]
  if j == nil then
    j = redis.call('HGET', K_JOBS, field) or false
    numbers[field] = j
  end
  local c = j and job(j, now)
  local tag, a, du, o, bl = 'ok', 0, 0, 0, 0
  if not c or c.state == 'gone' then
    tag = 'unknown'
  elseif c.state ~= 'run' then
    tag = 'refused'
  else
    a, du, o, bl = enqueue_all(j, c, at + 2, n, seq)
    if seeds and a > 0 then redis.call('HSET', k_job(j), 'sd', '1') end
  end
  seq = seq + n
  out[#out + 1] = tag
  out[#out + 1] = n2s(a)
  out[#out + 1] = n2s(du)
  out[#out + 1] = n2s(o)
  out[#out + 1] = n2s(bl)
  at = at + 2 + 4 * n
end
flush_jobs()
return out
