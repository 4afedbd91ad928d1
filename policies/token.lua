-- token.lua: the purchase token of a win (SPEC §7).
--
-- issue(r, a, secret) runs on a logic node before the atomic step; the token is stored with the win only if the
-- request wins. Return the token (16 to 128 printable ASCII bytes, no spaces; it must be unguessable) and,
-- optionally, its lifetime in seconds (an integer; logic.token_ttl when omitted).
--
--   r and a     as in buy_rate.lua
--   secret      logic.token_secret from the configuration; never log it
--
-- seckill.random_hex(n) gives n cryptographically random bytes as hex (n <= 64);
-- seckill.hmac_sha256(key, msg) and seckill.sha256(s) return lowercase hex.

-- The default: 16 random bytes plus the first half of an HMAC over user, product and time, 64 hex characters.
function issue(r, a, secret)
    local mac = seckill.hmac_sha256(secret, r.user_id .. ":" .. r.product_id .. ":" .. r.now)
    return seckill.random_hex(16) .. mac:sub(1, 32)
end
