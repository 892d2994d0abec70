-- Shared by the kubecrawl frontier's scripts (prepended to each). KEYS[1] is the spider's base
-- key "<prefix>:{<spiderid>}"; every key a script touches starts with it, so all of them share
-- the spider's Redis Cluster hash slot. Numbers above 2^31 are passed to Redis with n2s,
-- never with tostring (which keeps only 14 significant digits).
local B = KEYS[1]
local K_READY = B .. ':ready'
local K_WAIT = B .. ':wait'
local K_DEADLINES = B .. ':deadlines'
local K_RETRY = B .. ':retry'
local K_SEQ = B .. ':seq'
local K_LID = B .. ':lid'
local K_JOBS = B .. ':jobs'
local K_JOBNO = B .. ':jobno'
local K_TH = B .. ':th'
local K_BL = B .. ':bl'

-- An integral number as digits, without Lua's exponent notation past 1e14. '%d' formats through
-- a 64-bit integer, several times cheaper than '%.0f' (which took a tenth of Redis's CPU in
-- `make bench-frontier`); every number written here is integral and far below 2^53.
local function n2s(x) return string.format('%d', x) end

-- Runs `cmd key` with items[first..last] (all of `items` by default) as further arguments,
-- 1000 at a time (unpack's stack limit; pairs stay whole when they start at `first`). Returns
-- the last reply, and the elements of array replies in order.
local function call_chunked(cmd, key, items, first, last)
  first, last = first or 1, last or #items
  local reply, all = nil, {}
  for from = first, last, 1000 do
    reply = redis.call(cmd, key, unpack(items, from, math.min(from + 999, last)))
    if type(reply) == 'table' then
      for i = 1, #reply do all[#all + 1] = reply[i] end
    end
  end
  return reply, all
end

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function k_job(j) return B .. ':job:' .. j end
local function k_jd(j) return B .. ':jd:' .. j end
local function k_jq(j) return B .. ':jq:' .. j end
local function k_q(j, p, d) return B .. ':q:' .. j .. ':' .. p .. ':' .. d end
local function k_dq(d) return B .. ':dq:' .. d end
local function k_cd(d) return B .. ':cd:' .. d end
local function k_ad(d) return B .. ':ad:' .. d end
local function k_seen(j, b) return B .. ':s:' .. j .. ':' .. b end

local function score(p, seq) return (PRIO_MAX - tonumber(p)) * SEQ_SPAN + tonumber(seq) end
local function head_seq(entry) return string.match(entry, '^(%d+)') end

-- A request's payload: "<job>|<priority>|<domain>|<seq>|<record>". A lease is the member
-- "<lease number>|<payload>" of the deadlines sorted set, scored by its deadline; the client
-- holds the same string, so an acknowledgement is one ZREM that tells whether it still held.
local function parse_payload(s)
  return string.match(s, '^(%d+)|(-?%d+)|([^|]*)|(%d+)|(.*)$')
end

local function lease_payload(member)
  return string.match(member, '^%d+|(.*)$')
end

-- Jobs touched by this script call: read once, counters written back once at the end (one
-- HSET of absolute values; the script is atomic, so read-modify-write is safe).
local JOB_FIELDS = { 'st', 'exp', 'iv', 'gen', 'app', 'crawl', 'mp', 'dmp',
  'q', 'f', 'pg', 'it', 'by', 'er', 'rt', 'ad', 'stp', 'dl', 'ds', 'dn', 'nt' }
local FIRST_COUNTER = 9
local JOBS = {}
-- `extra` names one more counter to read with the others (a 'c<code>' about to be bumped).
local function job(j, now, extra)
  local c = JOBS[j]
  if c == nil then
    local fields = JOB_FIELDS
    if extra then
      fields = { unpack(JOB_FIELDS) }
      fields[#fields + 1] = extra
    end
    local v = redis.call('HMGET', k_job(j), unpack(fields))
    local st = v[1]
    if not st or st == 'purge' then
      c = { state = 'gone' }
    else
      local exp = tonumber(v[2]) or 0
      if st == 'run' and exp > 0 and now >= exp then st = 'exp' end
      c = { state = st, iv = tonumber(v[3]) or 0, gen = v[4] or '0', app = v[5] or '', crawl = v[6] or '',
            mp = tonumber(v[7]) or -1, dmp = tonumber(v[8]) or -1, n = {}, dirty = {}, inc = {} }
      for i = FIRST_COUNTER, #fields do c.n[fields[i]] = tonumber(v[i]) or 0 end
    end
    JOBS[j] = c
  end
  return c
end

-- Adds to a counter: one of JOB_FIELDS, or a per-status 'c<code>' (incremented in place).
local function bump(c, field, by)
  if c.n[field] ~= nil then
    c.n[field] = c.n[field] + by
    c.dirty[field] = true
  else
    c.inc[field] = (c.inc[field] or 0) + by
  end
end

local function set(c, field, value)
  c.n[field] = value
  c.dirty[field] = true
end

local function flush_jobs()
  for j, c in pairs(JOBS) do
    if c.state ~= 'gone' then
      local args = {}
      for f, _ in pairs(c.dirty) do
        args[#args + 1] = f
        args[#args + 1] = n2s(c.n[f])
      end
      if #args > 0 then redis.call('HSET', k_job(j), unpack(args)) end
      for f, by in pairs(c.inc) do
        if by ~= 0 then redis.call('HINCRBY', k_job(j), f, n2s(by)) end
      end
      c.dirty = {}
      c.inc = {}
    end
  end
end

local function in_wait(d) return redis.call('ZSCORE', K_WAIT, d) end

-- Whether job j (its state c) cut domain d off as a crawler trap ('t:<domain>' fields of the
-- job hash, counted in 'nt'): no lookup at all while the job has none.
local CUT = {}
local function cut_off(c, j, d)
  if c.n.nt == 0 then return false end
  local key = j .. '|' .. d
  local r = CUT[key]
  if r == nil then
    r = redis.call('HEXISTS', k_job(j), 't:' .. d) == 1
    CUT[key] = r
  end
  return r
end

-- Domain rules (throttles 'th', blacklist 'bl'): an entry for a domain covers its subdomains,
-- the longest matching domain's throttle wins. Looked up once per domain per script call, and
-- not at all while the spider has none.
local HAS_RULES = nil
local RULE_CACHE = {}
local function domain_rule(d)
  local r = RULE_CACHE[d]
  if r then return r end
  if HAS_RULES == nil then
    HAS_RULES = { th = redis.call('EXISTS', K_TH) == 1, bl = redis.call('EXISTS', K_BL) == 1 }
  end
  r = { th = 0, bl = false }
  if HAS_RULES.th or HAS_RULES.bl then
    local names = { d }
    local rest = d
    while true do
      local i = string.find(rest, '.', 1, true)
      if not i then break end
      rest = string.sub(rest, i + 1)
      if rest == '' then break end
      names[#names + 1] = rest
    end
    if HAS_RULES.th then
      local v = redis.call('HMGET', K_TH, unpack(names))
      for i = 1, #names do
        if v[i] then
          r.th = tonumber(v[i]) or 0
          break
        end
      end
    end
    if HAS_RULES.bl then
      local v = redis.call('SMISMEMBER', K_BL, unpack(names))
      for i = 1, #names do
        if v[i] == 1 then
          r.bl = true
          break
        end
      end
    end
  end
  RULE_CACHE[d] = r
  return r
end

-- Makes the domain's ready entry match its best queue head (or removes it).
local function refresh_domain(d)
  local best = redis.call('ZRANGE', k_dq(d), 0, 0, 'WITHSCORES')
  if best[1] == nil then
    redis.call('ZREM', K_READY, d)
    return
  end
  if in_wait(d) then return end
  redis.call('ZADD', K_READY, best[2], d)
end

-- Lists a (job, priority, domain) queue under its domain at its head's score.
local function attach(j, p, d)
  local head = redis.call('LINDEX', k_q(j, p, d), 0)
  if not head then return end
  local sc = n2s(score(p, head_seq(head)))
  redis.call('ZADD', k_dq(d), sc, j .. ':' .. p)
  if not in_wait(d) then redis.call('ZADD', K_READY, 'LT', sc, d) end
end

local function detach(j, p, d)
  redis.call('ZREM', k_dq(d), j .. ':' .. p)
  refresh_domain(d)
end

-- Puts a leased request back at the head of its queue (reclaim, release, park).
local function requeue_front(payload, now)
  local j, p, d, seq, rec = parse_payload(payload)
  if not j then return false end
  local c = job(j, now)
  if c.state == 'gone' then return false end
  bump(c, 'f', -1)
  bump(c, 'q', 1)
  local n = redis.call('LPUSH', k_q(j, p, d), seq .. ' ' .. rec)
  if n == 1 then redis.call('SADD', k_jq(j), p .. ':' .. d) end
  if c.state == 'run' then attach(j, p, d) end
  return true
end

-- Dedupe: a job's fingerprints in linear-hashing buckets (small listpack-encoded hashes).
local function fp_addr(fp)
  local a, b, c, d = string.byte(fp, 1, 4)
  return a + b * 256 + c * 65536 + d * 16777216
end

-- D is a job's counters: dl (level), ds (split pointer), dn (fingerprints).
local function dedupe_split(D, j)
  local m = 2 ^ D.dl
  local from = k_seen(j, n2s(D.ds))
  local to = k_seen(j, n2s(D.ds + m))
  local moved, args = {}, {}
  for _, f in ipairs(redis.call('HKEYS', from)) do
    if fp_addr(f) % (m * 2) ~= D.ds then
      moved[#moved + 1] = f
      args[#args + 1] = f
      args[#args + 1] = ''
    end
  end
  if #moved > 0 then
    redis.call('HSET', to, unpack(args))
    redis.call('HDEL', from, unpack(moved))
  end
  D.ds = D.ds + 1
  if D.ds >= m then
    D.dl = D.dl + 1
    D.ds = 0
  end
end

local function dedupe_add(c, j, fp)
  local D = c.n
  local h = fp_addr(fp)
  local m = 2 ^ D.dl
  local b = h % m
  if b < D.ds then b = h % (m * 2) end
  if redis.call('HSETNX', k_seen(j, n2s(b)), fp, '') == 0 then return false end
  D.dn = D.dn + 1
  if D.dn > DEDUPE_LOAD * (m + D.ds) then dedupe_split(D, j) end
  c.dirty.dl = true
  c.dirty.ds = true
  c.dirty.dn = true
  return true
end

-- Enqueues `count` requests given as ARGV quadruples (domain, priority, fingerprint, record)
-- from index `first`, through the blacklist, budgets and dedupe. Returns admitted, duplicates,
-- over budget, blacklisted. Their sequence numbers follow `seq` when given (the caller
-- reserved at least `count` of them), else are reserved here.
local function enqueue_all(j, c, first, count, seq)
  if count == 0 then return 0, 0, 0, 0 end
  local admitted, dup, over, black = 0, 0, 0, 0
  seq = seq or redis.call('INCRBY', K_SEQ, count) - count
  local jd = k_jd(j)
  local dcount, dinc, pushes, order = {}, {}, {}, {}
  for i = 0, count - 1 do
    local at = first + i * 4
    local d, p, fp, rec = ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3]
    local banned = domain_rule(d).bl or cut_off(c, j, d)
    local ok = not banned and not (c.mp >= 0 and c.n.ad >= c.mp)
    if ok and c.dmp >= 0 then
      local n = dcount[d]
      if n == nil then
        n = tonumber(redis.call('HGET', jd, d)) or 0
        dcount[d] = n
      end
      ok = n < c.dmp
    end
    if banned then
      -- refused before the dedupe, so the URL is admitted once the domain is allowed again
      black = black + 1
    elseif not ok then
      over = over + 1
    else
      if not dedupe_add(c, j, fp) then
        dup = dup + 1
      else
        admitted = admitted + 1
        bump(c, 'ad', 1)
        if dcount[d] then dcount[d] = dcount[d] + 1 end
        dinc[d] = (dinc[d] or 0) + 1
        seq = seq + 1
        local qk = k_q(j, p, d)
        local g = pushes[qk]
        if g == nil then
          g = { p = p, d = d, n = 0 }
          pushes[qk] = g
          order[#order + 1] = qk
        end
        g.n = g.n + 1
        g[g.n] = n2s(seq) .. ' ' .. rec
      end
    end
  end
  for _, qk in ipairs(order) do
    local g = pushes[qk]
    if call_chunked('RPUSH', qk, g, 1, g.n) == g.n then
      redis.call('SADD', k_jq(j), g.p .. ':' .. g.d)
      if c.state == 'run' then attach(j, g.p, g.d) end
    end
  end
  -- Per-domain counts are kept only while the job has a domain budget.
  if c.dmp >= 0 then
    for d, inc in pairs(dinc) do redis.call('HINCRBY', jd, d, inc) end
  end
  bump(c, 'q', admitted)
  if black > 0 then bump(c, 'bl', black) end
  return admitted, dup, over, black
end

-- Spider-level rolling counts. An acknowledgement increments one counter: its status label in
-- the current finest bucket (GRANS[1]). When the first write to a new finest bucket happens,
-- the previous one ("st:last") is rolled up into the coarser buckets and the lifetime hash, and
-- only then gets its TTL; readers add the one bucket not rolled up yet. So each spider holds
-- at most one bucket without a TTL, and an acknowledgement costs one HINCRBY.
local K_ST_LAST = B .. ':st:last'
local function st_key(g, n) return B .. ':st:' .. g .. ':' .. n2s(n) end

local function rollup(last)
  local fine = GRANS[1][1]
  local k = st_key(fine, last)
  local kv = redis.call('HGETALL', k)
  local s = last * fine
  for x = 1, #kv, 2 do
    for i = 2, #GRANS do
      local g = GRANS[i]
      local gk = st_key(g[1], math.floor(s / g[1]))
      redis.call('HINCRBY', gk, kv[x], kv[x + 1])
      redis.call('EXPIRE', gk, g[2])
    end
    redis.call('HINCRBY', B .. ':st:life', kv[x], kv[x + 1])
  end
  if #kv > 0 then redis.call('EXPIRE', k, GRANS[1][2]) end
end

local function spider_count(label, now, by)
  by = by or 1
  local b = math.floor(now / (GRANS[1][1] * 1000000))
  if redis.call('HINCRBY', st_key(GRANS[1][1], b), label, by) == by then
    local last = tonumber(redis.call('GET', K_ST_LAST) or '-1') or -1
    if last ~= b then
      if last >= 0 then rollup(last) end
      redis.call('SET', K_ST_LAST, n2s(b))
    end
  end
end

-- Before a lease: reclaims expired leases, promotes due retries and domains whose clock passed.
local function housekeeping(now, batch)
  local ids = redis.call('ZRANGEBYSCORE', K_DEADLINES, '-inf', n2s(now), 'LIMIT', 0, batch)
  for _, member in ipairs(ids) do
    redis.call('ZREM', K_DEADLINES, member)
    local payload = lease_payload(member)
    if payload then requeue_front(payload, now) end
  end
  local due = redis.call('ZRANGEBYSCORE', K_RETRY, '-inf', n2s(now), 'LIMIT', 0, batch)
  if #due > 0 then
    local seq = redis.call('INCRBY', K_SEQ, #due) - #due
    for _, m in ipairs(due) do
      redis.call('ZREM', K_RETRY, m)
      local j, p, d, rec = string.match(m, '^(%d+)|(-?%d+)|([^|]*)|(.*)$')
      if j then
        local c = job(j, now)
        if c.state ~= 'gone' then
          seq = seq + 1
          local n = redis.call('RPUSH', k_q(j, p, d), n2s(seq) .. ' ' .. rec)
          if n == 1 then
            redis.call('SADD', k_jq(j), p .. ':' .. d)
            if c.state == 'run' then attach(j, p, d) end
          end
        end
      end
    end
  end
  for _, d in ipairs(redis.call('ZRANGEBYSCORE', K_WAIT, '-inf', n2s(now), 'LIMIT', 0, batch)) do
    redis.call('ZREM', K_WAIT, d)
    refresh_domain(d)
  end
  return #ids
end
