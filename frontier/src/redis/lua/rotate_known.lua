-- rotate_known: starts a new recrawl round's known pages on one shard. KEYS[1] = the shard's
-- base; ARGV = job field. When the job has no previous set here and has a current one, the
-- current set becomes the previous one (RENAME: the current set is then empty); a previous set
-- already there (a rotation interrupted after this shard) is left as it is. Returns 1 when it
-- renamed. The client decides for the whole job whether to rotate at all ('knr').
local current = KEYS[1] .. ':kn:' .. ARGV[1]
local previous = KEYS[1] .. ':knp:' .. ARGV[1]
if redis.call('EXISTS', previous) == 1 or redis.call('EXISTS', current) == 0 then return 0 end
redis.call('RENAME', current, previous)
return 1
