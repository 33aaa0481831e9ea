-- wrk script: sends X-API-Key with the tokens of the file named by the
-- TOKENS environment variable, one per line, in turn from a random start
-- (LuaJIT's math.random is unseeded: with several threads, seed it), so
-- many distinct keys are active at once.
local tokens = {}
for line in io.lines(os.getenv("TOKENS")) do
	tokens[#tokens + 1] = line
end
local i = math.random(#tokens)

request = function()
	i = i % #tokens + 1
	return wrk.format("GET", "/", { ["X-API-Key"] = tokens[i] })
end
