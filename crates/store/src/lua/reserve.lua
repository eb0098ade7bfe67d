local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = #KEYS / 3
for i = 1, n do
  local z, a, tot = KEYS[3*i-2], KEYS[3*i-1], KEYS[3*i]
  local window, max, amount = tonumber(ARGV[4*i-3]), tonumber(ARGV[4*i-2]), tonumber(ARGV[4*i-1])
  while true do
    local old = redis.call('ZRANGEBYSCORE', z, '-inf', now - window, 'LIMIT', 0, 500)
    if #old == 0 then break end
    local amounts = redis.call('HMGET', a, unpack(old))
    local sum = 0
    for _, v in ipairs(amounts) do sum = sum + (tonumber(v) or 0) end
    redis.call('ZREM', z, unpack(old))
    redis.call('HDEL', a, unpack(old))
    redis.call('DECRBY', tot, sum)
  end
  local total = tonumber(redis.call('GET', tot) or '0')
  if total + amount > max then
    local need = total + amount - max
    local entries = redis.call('ZRANGE', z, 0, -1, 'WITHSCORES')
    local acc, at = 0, now
    for j = 1, #entries, 2 do
      acc = acc + (tonumber(redis.call('HGET', a, entries[j])) or 0)
      if acc >= need then at = tonumber(entries[j+1]); break end
    end
    return {0, i, math.max(at + window - now, 1)}
  end
end
for i = 1, n do
  local z, a, tot = KEYS[3*i-2], KEYS[3*i-1], KEYS[3*i]
  local window, amount, id = tonumber(ARGV[4*i-3]), ARGV[4*i-1], ARGV[4*i]
  redis.call('ZADD', z, now, id)
  redis.call('HSET', a, id, amount)
  redis.call('INCRBY', tot, amount)
  for _, k in ipairs({z, a, tot}) do redis.call('PEXPIRE', k, window + 1000) end
end
return {1, now}
