-- The real-program harness's Lua script: exercises the interpreter's core
-- (loops, strings, tables, closures, coroutines, errors, metatables, the GC)
-- and prints only what is deterministic: no addresses, no pairs() order over
-- string keys (string hashes are seeded per run), no clocks.

local function section(name) print(("== %s"):format(name)) end

section("loops")
local sum, product = 0, 1
for i = 1, 100 do sum = sum + i end
for i = 1, 20 do product = product * i end
local n, steps = 27, 0
while n ~= 1 do
  if n % 2 == 0 then n = n // 2 else n = 3 * n + 1 end
  steps = steps + 1
end
print("sum", sum, "20!", product, "collatz(27)", steps)
local countdown = {}
for i = 10, 1, -3 do countdown[#countdown + 1] = i end
print("countdown", table.concat(countdown, " "))

section("strings")
local text = "The quick brown fox jumps over the lazy dog"
print(text:upper())
print(text:len(), text:sub(5, 9), text:rep(2, "|"):len())
print(text:find("fox"), text:match("(%a+) dog"))
print((text:gsub("%w+", function(word) return word:reverse() end)))
local words = {}
for word in text:gmatch("%a+") do words[#words + 1] = word:lower() end
table.sort(words)
print(table.concat(words, ","))
print(("%5d|%-5s|%05.1f|%x|%q"):format(42, "ab", 3.14159, 255, "a\nb"))
print(string.byte("ABC", 1, 3), string.char(72, 105))
print(utf8.char(72, 228, 8364), utf8.len("häll€"))

section("floats")
print(string.format("%.3f %.10g %e %g", math.pi, 1 / 3, 6.02214076e23, 1e-5))
print(string.format("%.17g", 0.1 + 0.2), 7 / 2, 7 // 2, 7 % 3, -7 // 2, 2 ^ 10)
print(math.sqrt(2), math.floor(-3.5), math.ceil(-3.5), math.huge, -math.huge)
print(math.maxinteger, math.mininteger, math.tointeger(3.0), 3 | 5, 6 & 3, 1 << 40)
print(tostring(1e100), tostring(-0.0), 0x10, 1e15, 2^53)
local total = 0.0
for i = 1, 1000 do total = total + 1 / i end
print(string.format("harmonic(1000) = %.12f", total))

section("tables")
local squares = {}
for i = 1, 50 do squares[i] = i * i end
print(#squares, squares[7], table.concat(squares, " ", 1, 10))
table.insert(squares, 1, 0)
table.remove(squares)
print(#squares, squares[1], squares[#squares])
local people = {
  { name = "ada", age = 36 }, { name = "alan", age = 41 },
  { name = "grace", age = 85 }, { name = "edsger", age = 72 },
}
table.sort(people, function(a, b) return a.age > b.age end)
for _, person in ipairs(people) do io.write(person.name, ":", person.age, " ") end
print()
local counts = {}
for word in ("a b a c b a d"):gmatch("%a") do counts[word] = (counts[word] or 0) + 1 end
local keys = {}
for key in pairs(counts) do keys[#keys + 1] = key end
table.sort(keys)
for _, key in ipairs(keys) do io.write(key, "=", counts[key], " ") end
print()
print(table.unpack({ 1, 2, 3 }), select("#", nil, nil), select(2, "a", "b", "c"))
local big = {}
for i = 1, 20000 do big[i] = tostring(i) end
print(#big, big[12345], #table.concat(big))

section("closures")
local function counter(start)
  local value = start
  return function(step) value = value + (step or 1); return value end
end
local a, b = counter(0), counter(100)
a(); a(); b(5)
print(a(), b())
local adders = {}
for i = 1, 5 do adders[i] = function(x) return x + i end end
print(adders[1](10), adders[5](10))
local function fib(k) if k < 2 then return k end return fib(k - 1) + fib(k - 2) end
print("fib(25)", fib(25))
local memo = setmetatable({}, { __mode = "k" })
print(type(memo), getmetatable(memo).__mode)

section("metatables")
local Vector = {}
Vector.__index = Vector
function Vector.new(x, y) return setmetatable({ x = x, y = y }, Vector) end
function Vector.__add(p, q) return Vector.new(p.x + q.x, p.y + q.y) end
function Vector.__eq(p, q) return p.x == q.x and p.y == q.y end
function Vector.__tostring(p) return ("(%g, %g)"):format(p.x, p.y) end
function Vector:length() return math.sqrt(self.x * self.x + self.y * self.y) end
local v = Vector.new(3, 4) + Vector.new(0.5, -1)
print(tostring(v), v:length(), v == Vector.new(3.5, 3), rawequal(v, v))
local default = setmetatable({}, { __index = function(_, key) return key .. "?" end })
print(default.missing, rawget(default, "missing"))

section("coroutines")
local producer = coroutine.wrap(function()
  for i = 1, 5 do coroutine.yield(i * i) end
  return "done"
end)
local produced = {}
for _ = 1, 6 do produced[#produced + 1] = tostring(producer()) end
print(table.concat(produced, " "))
local co = coroutine.create(function(x, y)
  local z = coroutine.yield(x + y)
  local w = coroutine.yield(z * 2)
  return w, "end"
end)
print(coroutine.resume(co, 1, 2))
print(coroutine.resume(co, 10))
print(coroutine.resume(co, "last"))
print(coroutine.status(co), coroutine.resume(co))
local failing = coroutine.create(function() error("inside coroutine") end)
local ok, message = coroutine.resume(failing)
print(ok, (message:gsub("^.-:%d+: ", "")))

section("errors")
local ok2, err2 = pcall(function() error({ code = 42 }) end)
print(ok2, type(err2), err2.code)
print(pcall(error, "plain message", 0))
local ok3, err3 = pcall(function() local t = nil; return t.field end)
print(ok3, (err3:gsub("^.-:%d+: ", "")))
print(xpcall(function() error("with handler", 0) end, function(m) return "handled: " .. m end))
print(select("#", pcall(function() return 1, 2, 3 end)))
local ok4, err4 = pcall(string.rep)
print(ok4, err4)
print(tonumber("0x1F"), tonumber("  12  "), tonumber("1e2"), tonumber("z", 36), tonumber("nope"))

section("gc")
local garbage = {}
for i = 1, 50000 do garbage[i] = { i, tostring(i) } end
garbage = nil
collectgarbage()
collectgarbage("step")
print("after collect", collectgarbage("isrunning"))

section("load")
local chunk = load("local a, b = ... return a * b + 1")
print(chunk(6, 7))
local env = { print = print, x = 5 }
local sandboxed = load("x = x * 2 return x", "sandbox", "t", env)
print(sandboxed(), env.x)
print(load("syntax error here"))

print("done")
