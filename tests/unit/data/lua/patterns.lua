-- Conformance checks for the sandbox's string pattern functions (host/lua_pattern.c). Every expectation here also
-- holds for stock Lua 5.4: `lua5.4 -e 'dofile("patterns.lua") print(f())'` prints ok.
local function eq(got, want, what)
    if got ~= want then
        error(what .. ": got " .. tostring(got) .. ", want " .. tostring(want), 2)
    end
end

local function pack(...)
    return { n = select("#", ...), ... }
end

local function same(t, ...)
    local want = pack(...)
    if t.n ~= want.n then
        error("count: got " .. t.n .. ", want " .. want.n, 2)
    end
    for i = 1, want.n do
        if t[i] ~= want[i] then
            error("value " .. i .. ": got " .. tostring(t[i]) .. ", want " .. tostring(want[i]), 2)
        end
    end
end

function f()
    -- find: plain, specials, init, anchors
    same(pack(string.find("hello world", "o w")), 5, 7)
    same(pack(string.find("hello world", "o", 6)), 8, 8)
    same(pack(string.find("hello", "l+")), 3, 4)
    same(pack(string.find("hello", "xyz")), nil)
    same(pack(string.find("a.b", ".", 1, true)), 2, 2)
    same(pack(string.find("abc", "", 10)), nil)
    same(pack(string.find("abc", "", 4)), 4, 3)
    same(pack(string.find("abc", "b", -1)), nil)
    same(pack(string.find("abc", "b", -2)), 2, 2)
    same(pack(string.find("abc", "^b")), nil)
    same(pack(string.find("abc", "^a")), 1, 1)
    same(pack(string.find("abc", "c$")), 3, 3)
    same(pack(string.find("a$c", "$c")), 2, 3)
    same(pack(string.find("key = value", "(%w+)%s*=%s*(%w+)")), 1, 11, "key", "value")
    -- match: classes and sets
    eq(string.match("  abc123  ", "%a+"), "abc", "%a")
    eq(string.match("abc123", "%d+"), "123", "%d")
    eq(string.match("abc 123", "%S+$"), "123", "%S")
    eq(string.match("x=0x1F;", "0x(%x+)"), "1F", "%x")
    eq(string.match("hello", "[aeiou]"), "e", "set")
    eq(string.match("hello", "[^hel]"), "o", "negated set")
    eq(string.match("abc-def", "[a-c]+"), "abc", "range")
    eq(string.match("a]b", "[]]"), "]", "] first in set")
    eq(string.match("a-b", "[a%-]+"), "a-", "escaped - in set")
    eq(string.match("x%y", "%%"), "%", "%%")
    eq(string.match("A1_b", "[%w_]+"), "A1_b", "class in set")
    eq(string.match("(x)", "%(x%)"), "(x)", "escaped parens")
    -- quantifiers
    eq(string.match("aaab", "a-b"), "aaab", "lazy")
    eq(string.match("<a><b>", "<.->"), "<a>", "lazy shortest")
    eq(string.match("<a><b>", "<.*>"), "<a><b>", "greedy")
    eq(string.match("color colour", "colou?r"), "color", "?")
    eq(string.match("ab", "a?a?ab"), "ab", "? backtrack")
    eq(string.match("", "a*"), "", "empty *")
    -- captures
    same(pack(string.match("2024-01-31", "(%d+)-(%d+)-(%d+)")), "2024", "01", "31")
    same(pack(string.match("hello", "()ll()")), 3, 5)
    same(pack(string.match("abcabc", "(abc)%1")), "abc")
    same(pack(string.match("say \"hi\" now", "([\"'])(.-)%1")), "\"", "hi")
    same(pack(string.match("f(a(b)c) d", "%b()")), "(a(b)c)")
    same(pack(string.match("THE (quick) fox", "%f[%a]%a+")), "THE")
    same(pack(string.match("THE (quick) fox", "%f[%l]%a+")), "quick")
    same(pack(string.match("abc", "((a)(b))")), "ab", "a", "b")
    -- gmatch
    local words = {}
    for w in string.gmatch("one two  three", "%a+") do
        words[#words + 1] = w
    end
    eq(table.concat(words, ","), "one,two,three", "gmatch")
    local kv = {}
    for k, v in string.gmatch("a=1, b=2", "(%w+)=(%w+)") do
        kv[#kv + 1] = k .. v
    end
    eq(table.concat(kv, ","), "a1,b2", "gmatch captures")
    local n = 0
    for _ in string.gmatch("abc", "") do
        n = n + 1
    end
    eq(n, 4, "gmatch empty matches")
    local from3 = {}
    for w in string.gmatch("ab cd ef", "%a+", 4) do
        from3[#from3 + 1] = w
    end
    eq(table.concat(from3, ","), "cd,ef", "gmatch init")
    -- gsub
    same(pack(string.gsub("hello world", "o", "0")), "hell0 w0rld", 2)
    same(pack(string.gsub("hello world", "o", "0", 1)), "hell0 world", 1)
    same(pack(string.gsub("hello", "", "-")), "-h-e-l-l-o-", 6)
    same(pack(string.gsub("abc", "%w", "%0%0")), "aabbcc", 3)
    same(pack(string.gsub("hello world", "(%w+) (%w+)", "%2 %1")), "world hello", 1)
    same(pack(string.gsub("$name is $age", "%$(%w+)", { name = "bob", age = 42 })), "bob is 42", 2)
    same(pack(string.gsub("$x $y", "%$(%w+)", { x = "1" })), "1 $y", 2)
    same(pack(string.gsub("abc", "%w", function(c) return c:upper() .. "." end)), "A.B.C.", 3)
    same(pack(string.gsub("abc", "b", function() return false end)), "abc", 1)
    same(pack(string.gsub("abc", "^a", "X")), "Xbc", 1)
    same(pack(string.gsub("aaa", "^a", "X")), "Xaa", 1)
    same(pack(string.gsub("a b", " ", "%%")), "a%b", 1)
    same(pack(string.gsub("x", "x", 5)), "5", 1)
    -- errors
    assert(not pcall(string.find, "a", "%"), "trailing %")
    assert(not pcall(string.find, "a", "[a"), "missing ]")
    assert(not pcall(string.match, "a", "(a"), "unfinished capture")
    assert(not pcall(string.match, "a", "a)"), "invalid pattern capture")
    assert(not pcall(string.match, "a", "%1"), "invalid capture index")
    assert(not pcall(string.gsub, "a", "a", "%2"), "invalid capture in replacement")
    assert(not pcall(string.gsub, "a", "a", "%x"), "invalid use of %")
    assert(not pcall(string.match, "a", "%f"), "%f without [")
    -- methods reach the same functions
    same(pack(("key=val"):match("(%w+)=(%w+)")), "key", "val")
    same(pack(("aXbXc"):gsub("X", "-")), "a-b-c", 2)
    eq(("ab"):rep(3, ","), "ab,ab,ab", "rep with sep")
    eq(("ab"):rep(0), "", "rep 0")
    eq((""):rep(5), "", "rep empty")
    return "ok"
end
