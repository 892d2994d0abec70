-- job_backlog: ARGV = job field, SSCAN cursor, count. Looks at one page of the job's
-- (priority, domain) queues. Returns the next cursor ('0' when done, or when the job is not
-- registered), then (priority, domain, queued) for each queue of the page with something in it.
local j = redis.call('HGET', K_JOBS, ARGV[1])
if not j then return { '0' } end
local page = redis.call('SSCAN', k_jq(j), ARGV[2], 'COUNT', tonumber(ARGV[3]))
local out = { page[1] }
for _, m in ipairs(page[2]) do
  local p, d = string.match(m, '^(-?%d+):(.*)$')
  if p then
    local n = redis.call('LLEN', k_q(j, p, d))
    if n > 0 then
      out[#out + 1] = p
      out[#out + 1] = d
      out[#out + 1] = n2s(n)
    end
  end
end
return out
