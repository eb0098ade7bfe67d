if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local old = redis.call('HGET', KEYS[1], 'token_hash')
if old then redis.call('DEL', ARGV[4] .. old) end
redis.call('HSET', KEYS[1], 'token_hash', ARGV[1], 'token_prefix', ARGV[2])
redis.call('SET', ARGV[4] .. ARGV[1], ARGV[3])
redis.call('INCR', 'toolgate:state:v') redis.call('PUBLISH', 'toolgate:state:changed', '1')
return 1
