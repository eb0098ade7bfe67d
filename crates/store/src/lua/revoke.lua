if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSETNX', KEYS[1], 'revoked_at_ms', ARGV[1])
redis.call('INCR', 'toolgate:state:v') redis.call('PUBLISH', 'toolgate:state:changed', '1')
return 1
