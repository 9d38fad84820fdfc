-- S7: a random Host per request: 90% one of 10,000 exact hosts, 10% unknown hosts (served by
-- the host-less rules). Deterministic seed, so every run sends the same sequence.
math.randomseed(7)
request = function()
  local n = math.random(0, 9999)
  local host
  if math.random() < 0.9 then
    host = "h" .. n .. ".bench.test"
  else
    host = "miss" .. n .. ".example.test"
  end
  return wrk.format("GET", "/small", { ["Host"] = host })
end
