-- Reserves every counter of a call at Redis's time, or none. Per counter: KEYS z (entry
-- ids scored by time), a (entry amounts, only for amounts other than 1: most entries
-- write nothing there), t (the window's total); ARGV window ms, max, amount, entry id.
-- Returns {1, now} or {0, index of the full counter, ms until it would fit}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = #KEYS / 3

-- The amounts of `ids` (1 unless the hash says otherwise); `has`: the hash exists.
local function amounts(a, ids, has)
  local out = {}
  if has then
    local stored = redis.call('HMGET', a, unpack(ids))
    for j = 1, #ids do out[j] = tonumber(stored[j]) or 1 end
  else
    for j = 1, #ids do out[j] = 1 end
  end
  return out
end

for i = 1, n do
  local z, a, tot = KEYS[3*i-2], KEYS[3*i-1], KEYS[3*i]
  local window, max, amount = tonumber(ARGV[4*i-3]), tonumber(ARGV[4*i-2]), tonumber(ARGV[4*i-1])
  local cutoff = now - window
  -- Entries that left the window: looked for only when the oldest one has.
  local oldest = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')
  if #oldest == 2 and tonumber(oldest[2]) <= cutoff then
    local has = redis.call('EXISTS', a) == 1
    while true do
      local old = redis.call('ZRANGEBYSCORE', z, '-inf', cutoff, 'LIMIT', 0, 500)
      if #old == 0 then break end
      local sum = 0
      for _, v in ipairs(amounts(a, old, has)) do sum = sum + v end
      redis.call('ZREM', z, unpack(old))
      if has then redis.call('HDEL', a, unpack(old)) end
      redis.call('DECRBY', tot, sum)
      if #old < 500 then break end
    end
  end
  local total = tonumber(redis.call('GET', tot) or '0')
  if total + amount > max then
    local need = total + amount - max
    local entries = redis.call('ZRANGE', z, 0, -1, 'WITHSCORES')
    local ids = {}
    for j = 1, #entries, 2 do ids[#ids + 1] = entries[j] end
    local acc, at = 0, now
    if #ids > 0 then
      local each = amounts(a, ids, redis.call('EXISTS', a) == 1)
      for j = 1, #ids do
        acc = acc + each[j]
        if acc >= need then at = tonumber(entries[2*j]); break end
      end
    end
    return {0, i, math.max(at + window - now, 1)}
  end
end
for i = 1, n do
  local z, a, tot = KEYS[3*i-2], KEYS[3*i-1], KEYS[3*i]
  local keep, amount, id = tonumber(ARGV[4*i-3]) + 1000, ARGV[4*i-1], ARGV[4*i]
  redis.call('ZADD', z, now, id)
  if amount ~= '1' then
    redis.call('HSET', a, id, amount)
    redis.call('PEXPIRE', a, keep)
  end
  redis.call('INCRBY', tot, amount)
  redis.call('PEXPIRE', z, keep)
  redis.call('PEXPIRE', tot, keep)
end
return {1, now}
