local function live_ids(index, now)
  local out = {}
  for _, id in ipairs(redis.call('ZRANGE', index, 0, -1)) do
    local f = redis.call('HMGET', 'toolgate:ap:' .. id, 'status', 'expires_at_ms', 'decided_at_ms')
    local status = f[1]
    if not status or status == 'denied' or status == 'expired' or status == 'used'
        or tonumber(f[2]) <= now then
      redis.call('ZREM', index, id)
    else
      table.insert(out, {id, status, tonumber(f[3]) or 0})
    end
  end
  return out
end
local function record(id)
  return {redis.call('HGETALL', 'toolgate:ap:' .. id), redis.call('ZRANGE', 'toolgate:ap-votes:' .. id, 0, -1)}
end
