-- lease: ARGV = max, duration_us, housekeeping batch.
-- Returns now, deadline, reclaimed, then 7 fields per lease:
-- lease id, job, generation, appid, crawlid, domain, record.
local max_n = tonumber(ARGV[1])
local dur = tonumber(ARGV[2])
local now = now_us()
local reclaimed = housekeeping(now, tonumber(ARGV[3]))
local out = { n2s(now), n2s(now + dur), n2s(reclaimed) }
if max_n > 0 then
  local lid = redis.call('INCRBY', K_LID, max_n) - max_n
  local served, guard = 0, 0
  while served < max_n and guard < max_n * 4 + 64 do
    guard = guard + 1
    local d = redis.call('ZRANGE', K_READY, 0, 0)[1]
    if not d then break end
    local m = redis.call('ZRANGE', k_dq(d), 0, 0)[1]
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
      else
        local qk = k_q(j, p, d)
        local e = redis.call('LPOP', qk)
        local nxt = e and redis.call('LINDEX', qk, 0)
        if nxt then
          redis.call('ZADD', k_dq(d), n2s(score(p, head_seq(nxt))), m)
        else
          redis.call('ZREM', k_dq(d), m)
          redis.call('SREM', k_jq(j), p .. ':' .. d)
        end
        if not e then
          refresh_domain(d)
        else
          local seq, rec = string.match(e, '^(%d+) (.*)$')
          local iv = c.iv
          local cd = tonumber(redis.call('GET', k_cd(d)) or '0') or 0
          if cd > iv then iv = cd end
          if iv > 0 then
            redis.call('ZREM', K_READY, d)
            redis.call('ZADD', K_WAIT, n2s(now + iv), d)
          else
            -- d came from the ready set, so it is not waiting: no need to ask
            local best = redis.call('ZRANGE', k_dq(d), 0, 0, 'WITHSCORES')
            if best[1] == nil then
              redis.call('ZREM', K_READY, d)
            else
              redis.call('ZADD', K_READY, best[2], d)
            end
          end
          lid = lid + 1
          local id = n2s(lid)
          redis.call('HSET', K_LEASES, id, j .. '|' .. p .. '|' .. d .. '|' .. seq .. '|' .. rec)
          redis.call('ZADD', K_DEADLINES, n2s(now + dur), id)
          bump(c, 'q', -1)
          bump(c, 'f', 1)
          served = served + 1
          out[#out + 1] = id
          out[#out + 1] = j
          out[#out + 1] = c.gen
          out[#out + 1] = c.app
          out[#out + 1] = c.crawl
          out[#out + 1] = d
          out[#out + 1] = rec
        end
      end
    end
  end
end
flush_jobs()
return out
