local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return false end
local p = cjson.decode(raw)
if not p.pending_hash then return false end
p.hash, p.definition, p.pinned_at_ms = p.pending_hash, p.pending_definition, ARGV[2]
p.pending_hash, p.pending_definition = nil, nil
local enc = cjson.encode(p)
redis.call('HSET', KEYS[1], ARGV[1], enc)
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('INCR', 'toolgate:state:v') redis.call('PUBLISH', 'toolgate:state:changed', '1')
return enc
