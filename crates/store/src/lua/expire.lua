if redis.call('HGET', KEYS[1], 'status') == 'pending' then
  redis.call('HSET', KEYS[1], 'status', 'expired', 'decided_at_ms', ARGV[2])
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 1
end
return 0
