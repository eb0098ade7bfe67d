local now = ARGV[1]
local first = redis.call('HLEN', KEYS[1]) == 0
local changed, out, touched = {}, {}, false
for i = 2, #ARGV, 3 do
  local tool, hash, def = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local raw = redis.call('HGET', KEYS[1], tool)
  local p, write = nil, false
  if not raw then
    write = true
    if first then
      p = {hash = hash, definition = def, pinned_at_ms = now, seen_at_ms = now}
    else
      p = {pending_hash = hash, pending_definition = def, seen_at_ms = now}
      table.insert(changed, tool)
      table.insert(changed, 'new since pinning')
    end
  else
    p = cjson.decode(raw)
    if p.hash == hash then
      if p.pending_hash then
        p.pending_hash, p.pending_definition, write = nil, nil, true
      end
    elseif p.pending_hash ~= hash then
      local was = p.hash or 'none'
      p.pending_hash, p.pending_definition, p.seen_at_ms, write = hash, def, now, true
      table.insert(changed, tool)
      table.insert(changed, 'definition changed: pinned ' .. was .. ', now ' .. hash)
    end
  end
  local enc = cjson.encode(p)
  if write then
    redis.call('HSET', KEYS[1], tool, enc)
    touched = true
  end
  if p.pending_hash then redis.call('SADD', KEYS[2], tool) else redis.call('SREM', KEYS[2], tool) end
  table.insert(out, enc)
end
if touched then redis.call('INCR', 'toolgate:state:v') redis.call('PUBLISH', 'toolgate:state:changed', '1') end
return {changed, out}
