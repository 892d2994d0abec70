-- lease: ARGV = max, duration_us, housekeeping batch.
-- Returns now, deadline, reclaimed, then 4 fields per lease:
-- lease ("<lease number>|<job>|<priority>|<domain>|<seq>|<record>"), generation, appid, crawlid.
local max_n = tonumber(ARGV[1])
local dur = tonumber(ARGV[2])
local now = now_us()
local reclaimed = housekeeping(now, tonumber(ARGV[3]))
local out = { n2s(now), n2s(now + dur), n2s(reclaimed) }
if max_n > 0 then
  local lid = redis.call('INCRBY', K_LID, max_n) - max_n
  local served, guard = 0, 0
  -- (deadline, lease) pairs, added to the deadlines set in one ZADD at the end
  local deadline, deadlines = n2s(now + dur), {}
  while served < max_n and guard < max_n * 4 + 64 do
    guard = guard + 1
    local d = redis.call('ZRANGE', K_READY, 0, 0)[1]
    if not d then break end
    -- the domain's best two queues: after the pop, the domain's score is the better of the
    -- popped queue's new head and the runner-up
    local top = redis.call('ZRANGE', k_dq(d), 0, 1, 'WITHSCORES')
    local m = top[1]
    if not m then
      redis.call('ZREM', K_READY, d)
    else
      local j, p = string.match(m, '^(%d+):(-?%d+)$')
      local c = job(j, now)
      if c.state ~= 'run' then
        -- suspended queues are detached when suspending; this is an expired or purged job
        redis.call('ZREM', k_dq(d), m)
        if c.state == 'exp' then redis.call('HSET', k_job(j), 'xd', '1') end
        refresh_domain(d)
      elseif domain_rule(d).bl or cut_off(c, j, d) then
        -- queued before its domain was blacklisted (or cut off for the job as a trap): the
        -- whole queue is dropped, and counted
        local qk = k_q(j, p, d)
        local n = redis.call('LLEN', qk)
        redis.call('UNLINK', qk)
        redis.call('ZREM', k_dq(d), m)
        redis.call('SREM', k_jq(j), p .. ':' .. d)
        bump(c, 'q', -n)
        bump(c, 'bl', n)
        refresh_domain(d)
      else
        local qk = k_q(j, p, d)
        local e = redis.call('LPOP', qk)
        local nxt = e and redis.call('LINDEX', qk, 0)
        local best = top[4] and tonumber(top[4])
        if nxt then
          local sc = score(p, head_seq(nxt))
          redis.call('ZADD', k_dq(d), n2s(sc), m)
          if best == nil or sc < best then best = sc end
        else
          redis.call('ZREM', k_dq(d), m)
          redis.call('SREM', k_jq(j), p .. ':' .. d)
        end
        if not e then
          refresh_domain(d)
        else
          local seq, rec = string.match(e, '^(%d+) (.*)$')
          local iv = c.iv
          -- a robots.txt Crawl-delay and a worker's adaptive delay, in one read
          local delays = redis.call('MGET', k_cd(d), k_ad(d))
          local cd = tonumber(delays[1] or '0') or 0
          if cd > iv then iv = cd end
          local ad = tonumber(delays[2] or '0') or 0
          if ad > iv then iv = ad end
          local th = domain_rule(d).th
          if th > iv then iv = th end
          if iv > 0 then
            redis.call('ZREM', K_READY, d)
            redis.call('ZADD', K_WAIT, n2s(now + iv), d)
          else
            -- d came from the ready set, so it is not waiting
            if best == nil then
              redis.call('ZREM', K_READY, d)
            else
              redis.call('ZADD', K_READY, n2s(best), d)
            end
          end
          lid = lid + 1
          local member = n2s(lid) .. '|' .. j .. '|' .. p .. '|' .. d .. '|' .. seq .. '|' .. rec
          deadlines[#deadlines + 1] = deadline
          deadlines[#deadlines + 1] = member
          bump(c, 'q', -1)
          bump(c, 'f', 1)
          served = served + 1
          out[#out + 1] = member
          out[#out + 1] = c.gen
          out[#out + 1] = c.app
          out[#out + 1] = c.crawl
        end
      end
    end
  end
  call_chunked('ZADD', K_DEADLINES, deadlines)
end
flush_jobs()
return out
