-- spider stats: ARGV = (label, seconds, granularity) per window.
-- Returns (label, status, count) triples, lifetime included.
local s = math.floor(now_us() / 1000000)
local out = {}
for i = 1, #ARGV, 3 do
  local label, secs, g = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local gn = tonumber(g)
  local from = math.floor(math.max(s - secs, 0) / gn)
  local to = math.floor(s / gn)
  local acc = {}
  for b = from + 1, to do
    local kv = redis.call('HGETALL', B .. ':st:' .. g .. ':' .. n2s(b))
    for x = 1, #kv, 2 do acc[kv[x]] = (acc[kv[x]] or 0) + tonumber(kv[x + 1]) end
  end
  for st, n in pairs(acc) do
    out[#out + 1] = label
    out[#out + 1] = st
    out[#out + 1] = n2s(n)
  end
end
local kv = redis.call('HGETALL', B .. ':st:life')
for x = 1, #kv, 2 do
  out[#out + 1] = 'lifetime'
  out[#out + 1] = kv[x]
  out[#out + 1] = kv[x + 1]
end
return out
