local now = tonumber(ARGV[3])
local f = redis.call('HMGET', KEYS[1], 'status', 'expires_at_ms', 'required', 'timeout_ms')
if not f[1] then return {'notfound'} end
local status = f[1]
if (status == 'opening' or status == 'pending' or status == 'approved') and now >= tonumber(f[2]) then
  status = 'expired'
end
if status ~= 'pending' then
  if status == 'expired' and f[1] == 'pending' then
    redis.call('HSET', KEYS[1], 'status', 'expired')
    redis.call('ZREM', KEYS[3], ARGV[1])
  end
  return {'notpending', status}
end
if redis.call('ZADD', KEYS[2], 'NX', now, ARGV[2]) == 0 then return {'already', f[3]} end
if redis.call('ZCARD', KEYS[2]) >= tonumber(f[3]) then
  local expires = now + tonumber(f[4])
  redis.call('HSET', KEYS[1], 'status', 'approved', 'decided_by', ARGV[2],
    'decided_at_ms', string.format('%d', now), 'expires_at_ms', string.format('%d', expires))
  redis.call('ZREM', KEYS[3], ARGV[1])
  local keep = expires - now + tonumber(ARGV[4])
  redis.call('PEXPIRE', KEYS[1], keep)
  -- The call's index must live as long, or the approved call could not find it.
  local index = redis.call('HGET', KEYS[1], 'call_key')
  if index and redis.call('PTTL', index) < keep then redis.call('PEXPIRE', index, keep) end
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return {'ok', redis.call('HGETALL', KEYS[1]), redis.call('ZRANGE', KEYS[2], 0, -1)}
