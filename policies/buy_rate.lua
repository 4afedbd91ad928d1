-- buy_rate.lua: the lottery of the logic layer (SPEC §7).
--
-- allow(r, a) runs on a logic node for each queued request, before the atomic step in Redis. Return true to let
-- the request try to buy, or false: the request then answers 1011 ("not selected this time", HTTP 429), unless it
-- was already sold out (1007) or the user is at the buy limit (1012), which take precedence.
--
--   r.user_id, r.product_id, r.now (unix seconds), r.ip
--   a.activity_id, a.product_id, a.name, a.start_time, a.end_time, a.status (1 = enabled)
--   a.total, a.sold, a.left   stock, as last seen by this node (sold/left lag Redis by up to a second)
--   a.speed                   max wins per second (0 = unlimited; enforced in Redis, not here)
--   a.buy_limit               wins per user
--   a.buy_rate                the activity's selection probability, 0 < buy_rate <= 1
--
-- seckill.random() is a float in [0, 1) from a fast per-thread generator. The sandbox and the budgets are those of
-- limits.lua; a failing call or a non-boolean result answers 1013.

-- The default: each request is selected with probability a.buy_rate.
function allow(r, a)
    return seckill.random() < a.buy_rate
end
