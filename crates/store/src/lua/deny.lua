local f = redis.call('HMGET', KEYS[1], 'status', 'expires_at_ms')
if f[1] == 'pending' and tonumber(f[2]) > tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[1], 'status', 'denied', 'reason', ARGV[2], 'decided_by', ARGV[3], 'decided_at_ms', ARGV[4])
  redis.call('ZREM', KEYS[2], ARGV[1])
  return {redis.call('HGETALL', KEYS[1]), redis.call('ZRANGE', 'toolgate:ap-votes:' .. ARGV[1], 0, -1)}
end
return false
