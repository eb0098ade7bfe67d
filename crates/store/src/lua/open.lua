if redis.call('HGET', KEYS[1], 'status') == 'opening' then
  redis.call('HSET', KEYS[1], 'status', 'pending')
  redis.call('ZADD', KEYS[2], redis.call('HGET', KEYS[1], 'created_at_ms'), ARGV[1])
end
return 1
