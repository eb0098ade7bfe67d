-- Gives entries back: per counter KEYS z, a, t and ARGV the entry id. An entry's amount is
-- in the hash when it is not 1.
for i = 1, #ARGV do
  local z, a, tot = KEYS[3*i-2], KEYS[3*i-1], KEYS[3*i]
  if redis.call('ZREM', z, ARGV[i]) == 1 then
    local amount = tonumber(redis.call('HGET', a, ARGV[i])) or 1
    redis.call('HDEL', a, ARGV[i])
    redis.call('DECRBY', tot, amount)
  end
end
return 1
