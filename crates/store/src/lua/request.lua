local now = tonumber(ARGV[1])
for _, a in ipairs(live_ids(KEYS[1], now)) do
  if a[2] == 'pending' then
    local r = record(a[1])
    return {0, a[1], r[1], r[2]}
  end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - 2592000000, 'LIMIT', 0, 100)) do
  if redis.call('EXISTS', 'toolgate:ap:' .. id) == 0 then redis.call('ZREM', KEYS[2], id) end
end
local id = ARGV[2]
local k = 'toolgate:ap:' .. id
redis.call('HSET', k, 'call_key', KEYS[1], unpack(ARGV, 4))
local ttl = tonumber(ARGV[3]) - now
redis.call('PEXPIRE', k, ttl)
redis.call('ZADD', KEYS[1], now, id)
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
redis.call('ZADD', KEYS[2], now, id)
local r = record(id)
return {1, id, r[1], r[2]}
