-- retry: ARGV = lease (the deadlines member), give up ('1' or '0'), delay_us, record with retries counted, status.
-- Returns {'scheduled'} | {'gaveup'} | {'gone'} | {'stale'}.
local now = now_us()
if redis.call('ZREM', K_DEADLINES, ARGV[1]) == 0 then return { 'stale' } end
local payload = lease_payload(ARGV[1]) or ''
local j, p, d = parse_payload(payload)
if not j then return { 'gone' } end
local c = job(j, now, ARGV[5] ~= '' and ('c' .. ARGV[5]) or nil)
if c.state == 'gone' then return { 'gone' } end
bump(c, 'f', -1)
if ARGV[2] == '1' then
  local status = ARGV[5]
  bump(c, 'er', 1)
  if status == '' then
    spider_count('error', now)
  else
    bump(c, 'pg', 1)
    bump(c, 'c' .. status, 1)
    spider_count(status, now)
  end
  flush_jobs()
  return { 'gaveup' }
end
bump(c, 'q', 1)
bump(c, 'rt', 1)
redis.call('ZADD', K_RETRY, n2s(now + tonumber(ARGV[3])), j .. '|' .. p .. '|' .. d .. '|' .. ARGV[4])
flush_jobs()
return { 'scheduled' }
