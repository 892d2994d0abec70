-- spider stats: ARGV = (label, seconds, granularity) per window.
-- Returns (label, status, count) triples, lifetime included. The finest bucket not yet rolled
-- up into the coarser ones ("st:last") is added to every coarser window it falls in.
local s = math.floor(now_us() / 1000000)
local fine = GRANS[1][1]
local last = tonumber(redis.call('GET', K_ST_LAST) or '-1') or -1
local pending = {}
if last >= 0 then
  local kv = redis.call('HGETALL', st_key(fine, last))
  for x = 1, #kv, 2 do pending[kv[x]] = tonumber(kv[x + 1]) end
end
local out = {}
local function emit(label, acc)
  for st, n in pairs(acc) do
    out[#out + 1] = label
    out[#out + 1] = st
    out[#out + 1] = n2s(n)
  end
end
for i = 1, #ARGV, 3 do
  local label, secs, g = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local from = math.floor(math.max(s - secs, 0) / g)
  local to = math.floor(s / g)
  local acc = {}
  for b = from + 1, to do
    local kv = redis.call('HGETALL', st_key(g, b))
    for x = 1, #kv, 2 do acc[kv[x]] = (acc[kv[x]] or 0) + tonumber(kv[x + 1]) end
  end
  if g ~= fine and last >= 0 and math.floor(last * fine / g) > from then
    for st, n in pairs(pending) do acc[st] = (acc[st] or 0) + n end
  end
  emit(label, acc)
end
local life = {}
local kv = redis.call('HGETALL', B .. ':st:life')
for x = 1, #kv, 2 do life[kv[x]] = tonumber(kv[x + 1]) end
for st, n in pairs(pending) do life[st] = (life[st] or 0) + n end
emit('lifetime', life)
return out
