local now = tonumber(ARGV[1])
local best, best_at = nil, nil
for _, a in ipairs(live_ids(KEYS[1], now)) do
  if a[2] == 'approved' and (ARGV[2] == '' or ARGV[2] == a[1]) then
    if best == nil or a[3] < best_at then best, best_at = a[1], a[3] end
  end
end
if best == nil then return false end
redis.call('HSET', 'toolgate:ap:' .. best, 'status', 'used', 'used_at_ms', ARGV[1])
return record(best)
