if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('ZADD', KEYS[2], redis.call('INCR', 'toolgate:pv-seq'), ARGV[1])
end
return 1
