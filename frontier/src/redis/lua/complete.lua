-- complete: acknowledges one lease or several at once (the worker batches them).
-- ARGV = lease count, then per lease: the lease (the deadlines member), status ('' for none),
-- bytes, items, step, named counters ('name=n;name=n', added to the job's 'x:<name>' fields),
-- the job field under which to remember a known page ('' for none), its URL and its record
-- (written to the hash '<base>:kn:<job field>' when the lease is acked), child count, then
-- (domain, priority, fingerprint, record) per child.
-- Returns six strings per lease, in order: 'acked', admitted, duplicates, over budget, refused,
-- blacklisted | 'parked' | 'gone' | 'stale' (then five '0').
-- The leases are handled one after the other, as if acknowledged by separate calls: a child two
-- of them share is admitted once. Job counters are written back once for the whole batch.
local now = now_us()
-- Arguments of each lease before its children; the last of them is the child count.
local FIXED = 10
local function next_lease(at) return at + FIXED + 4 * tonumber(ARGV[at + FIXED - 1]) end
local ZERO = { '0', '0', '0', '0', '0' }
-- Sequence numbers for every child of the batch, reserved at once; a refused child leaves a
-- gap, which orders nothing differently.
local leases, children = tonumber(ARGV[1]), 0
-- Which leases are still held, read at once; then all of those are removed at once. A lease
-- named twice in a batch is held for its first acknowledgement only.
local held = {}
do
  local at, members = 2, {}
  for _ = 1, leases do
    members[#members + 1] = ARGV[at]
    children = children + tonumber(ARGV[at + FIXED - 1])
    at = next_lease(at)
  end
  local _, scores = call_chunked('ZMSCORE', K_DEADLINES, members)
  local gone = {}
  for i, member in ipairs(members) do
    if scores[i] and not held[member] then
      held[member] = true
      gone[#gone + 1] = member
    end
  end
  call_chunked('ZREM', K_DEADLINES, gone)
end
local seq = children > 0 and redis.call('INCRBY', K_SEQ, children) - children or 0
-- The spider's rolling counts per status label, written once per label.
local labels = {}

-- The lease whose fields start at ARGV[at]; returns its tag and counts.
local function complete_one(at)
  if not held[ARGV[at]] then return 'stale', ZERO end
  held[ARGV[at]] = nil
  local payload = lease_payload(ARGV[at]) or ''
  local j = parse_payload(payload)
  if not j then return 'gone', ZERO end
  local status = ARGV[at + 1]
  local c = job(j, now, status ~= '' and ('c' .. status) or nil)
  if c.state == 'gone' then return 'gone', ZERO end
  if c.state == 'susp' then
    requeue_front(payload, now)
    return 'parked', ZERO
  end
  bump(c, 'f', -1)
  if status == '' then
    bump(c, 'er', 1)
  else
    bump(c, 'pg', 1)
    bump(c, 'c' .. status, 1)
  end
  bump(c, 'by', tonumber(ARGV[at + 2]))
  bump(c, 'it', tonumber(ARGV[at + 3]))
  local step = tonumber(ARGV[at + 4])
  if step > c.n.stp then set(c, 'stp', step) end
  for name, by in string.gmatch(ARGV[at + 5], '([%l_]+)=(%d+)') do
    bump(c, 'x:' .. name, tonumber(by))
  end
  local label = status == '' and 'error' or status
  labels[label] = (labels[label] or 0) + 1
  if ARGV[at + 6] ~= '' then
    redis.call('HSET', B .. ':kn:' .. ARGV[at + 6], ARGV[at + 7], ARGV[at + 8])
  end
  local n = tonumber(ARGV[at + FIXED - 1])
  local a, du, o, r, bl = 0, 0, 0, 0, 0
  if c.state == 'run' then
    a, du, o, bl = enqueue_all(j, c, at + FIXED, n, seq)
    seq = seq + n
  else
    r = n
  end
  return 'acked', { n2s(a), n2s(du), n2s(o), n2s(r), n2s(bl) }
end

local out = {}
local at = 2
for _ = 1, leases do
  local tag, counts = complete_one(at)
  out[#out + 1] = tag
  for k = 1, 5 do out[#out + 1] = counts[k] end
  at = next_lease(at)
end
for label, n in pairs(labels) do spider_count(label, now, n) end
flush_jobs()
return out
