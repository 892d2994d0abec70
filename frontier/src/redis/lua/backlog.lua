-- backlog: ARGV = 'ready' or 'wait', offset, count. Looks at one page of that set's domains.
-- Returns in flight, retrying, domains looked at, then (domain, queued, ready) for each domain
-- of the page with something queued; ready is '1' when the domain may be fetched now (it is in
-- the ready set, or its clock in the wait set has passed).
local waiting = ARGV[1] == 'wait'
local set = waiting and K_WAIT or K_READY
local from = tonumber(ARGV[2])
local page = redis.call('ZRANGE', set, from, from + tonumber(ARGV[3]) - 1, 'WITHSCORES')
local now = waiting and now_us() or 0
local out = { n2s(redis.call('ZCARD', K_DEADLINES)), n2s(redis.call('ZCARD', K_RETRY)), n2s(#page / 2) }
for i = 1, #page, 2 do
  local d = page[i]
  local n = 0
  for _, m in ipairs(redis.call('ZRANGE', k_dq(d), 0, -1)) do
    local j, p = string.match(m, '^(%d+):(-?%d+)$')
    if j then n = n + redis.call('LLEN', k_q(j, p, d)) end
  end
  if n > 0 then
    out[#out + 1] = d
    out[#out + 1] = n2s(n)
    out[#out + 1] = (not waiting or tonumber(page[i + 1]) <= now) and '1' or '0'
  end
end
return out
