-- backlog: ARGV = 'ready' or 'wait', offset, count. Looks at one page of that set's domains.
-- Returns in flight, retrying, domains looked at, then (domain, queued) for each domain of the
-- page with something queued.
local set = K_READY
if ARGV[1] == 'wait' then set = K_WAIT end
local page = redis.call('ZRANGE', set, tonumber(ARGV[2]), tonumber(ARGV[2]) + tonumber(ARGV[3]) - 1)
local out = { n2s(redis.call('ZCARD', K_DEADLINES)), n2s(redis.call('ZCARD', K_RETRY)), n2s(#page) }
for _, d in ipairs(page) do
  local n = 0
  for _, m in ipairs(redis.call('ZRANGE', k_dq(d), 0, -1)) do
    local j, p = string.match(m, '^(%d+):(-?%d+)$')
    if j then n = n + redis.call('LLEN', k_q(j, p, d)) end
  end
  if n > 0 then
    out[#out + 1] = d
    out[#out + 1] = n2s(n)
  end
end
return out
